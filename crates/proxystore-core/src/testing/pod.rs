//! Conformance cases for typed views ([`PodArray`]) over each connector's
//! buffers: zero-copy when aligned, one counted copy when not, a typed
//! error (and no lost data) when the bytes are not an array of the type.

use std::sync::Arc;

use bytes::Bytes;

use crate::connector::Connector;
use crate::error::Error;
use crate::pod::PodArray;
use crate::store::{unregister_store, Store};
use crate::Proxy;

/// A store over `c` with no cache (every get reaches the connector).
fn store_over(c: Arc<dyn Connector>) -> (Store, String) {
    let name = format!("conformance-pod-{}", crate::ObjectId::random());
    (Store::builder(name.clone(), c).cache_size(0).build(), name)
}

/// An array put through the store reads back as a view without a copy
/// (the stored layout keeps the elements aligned in the connector's
/// buffer), as an owned `Vec`, and through a proxy resolved elsewhere.
pub fn pod_array_round_trip(c: Arc<dyn Connector>) {
    let (store, name) = store_over(c);
    for len in [0usize, 3, 1000, 1 << 17] {
        let a = PodArray::build(len, |v: &mut [f64]| {
            v.iter_mut()
                .enumerate()
                .for_each(|(i, x)| *x = i as f64 * 0.5);
        });
        let key = store.put(&a).expect("put array");
        let view: PodArray<f64> = store.get(&key).expect("get view").expect("present");
        assert_eq!(view, a, "{len} elements as a view");
        let owned: Vec<f64> = store.get(&key).expect("get owned").expect("present");
        assert_eq!(owned.as_slice(), &a[..], "{len} elements as a Vec");
        store.evict(&key).expect("evict");
    }
    assert_eq!(
        store.metrics().realigned,
        0,
        "the connector returned a buffer whose elements are not 8-aligned"
    );
    let a = PodArray::from_slice(&[7u32, 8, 9]);
    let proxy = store.proxy(&a).expect("proxy");
    let wire = bincode::serialize(&proxy).expect("serialize proxy");
    unregister_store(&name);
    let received: Proxy<PodArray<u32>> = bincode::deserialize(&wire).expect("deserialize proxy");
    assert_eq!(&received.resolve().expect("resolve")[..], &[7, 8, 9]);
    unregister_store(&name);
}

/// A plain-old-data record aligned to 16 bytes: its elements sit
/// misaligned in a `Vec` layout (offset 8) of an aligned buffer, which is
/// what the realignment cases need.
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C, align(16))]
pub struct Aligned16 {
    /// First word.
    pub a: u64,
    /// Second word.
    pub b: u64,
}

// SAFETY: `repr(C)`, two u64 fields and no padding (size 16, align 16);
// every bit pattern is valid.
unsafe impl bytemuck::Zeroable for Aligned16 {}
// SAFETY: as above; `Copy + 'static`.
unsafe impl bytemuck::Pod for Aligned16 {}

/// Elements misaligned in the connector's buffer are copied once into an
/// aligned one (counted in the store's metrics), never read unaligned.
pub fn pod_array_misaligned_is_copied_once(c: Arc<dyn Connector>) {
    let (store, name) = store_over(c);
    let w: Vec<Aligned16> = (0..1000).map(|i| Aligned16 { a: i, b: i * 3 }).collect();
    let mut vec_layout = (w.len() as u64).to_le_bytes().to_vec();
    vec_layout.extend_from_slice(bytemuck::cast_slice(&w));
    let key = store.put_bytes(vec_layout).expect("put");
    let view: PodArray<Aligned16> = store.get(&key).expect("get").expect("present");
    assert_eq!(&view[..], &w[..]);
    assert_eq!(view.as_ptr() as usize % 16, 0, "view is not aligned");
    let realigned = store.metrics().realigned;
    assert!(realigned <= 1, "one read copied {realigned} times");
    store.evict(&key).expect("evict");
    unregister_store(&name);
}

/// Bytes that are not an array of the asked type (a length that is not a
/// whole number of elements, a truncated array, another element type) are
/// an `Error::Codec`, and the object is still there afterwards.
pub fn pod_array_bad_length_is_typed_error(c: Arc<dyn Connector>) {
    let (store, name) = store_over(c);
    let mut odd = 1u64.to_le_bytes().to_vec();
    odd.extend_from_slice(&[0; 13]);
    let ints = PodArray::from_slice(&[1i64, 2, 3]);
    let whole = ints.stored_bytes().clone();
    let truncated = whole.slice(..whole.len() - 3);
    let cases: [(&str, Bytes); 3] = [
        ("8 + 13 bytes", Bytes::from(odd)),
        ("a truncated array", truncated),
        ("an i64 array", whole),
    ];
    for (what, data) in cases {
        let key = store.put_bytes(data.clone()).expect("put");
        match store.get::<PodArray<f64>>(&key) {
            Err(Error::Codec { .. }) => {}
            other => panic!("{what} read as PodArray<f64>: {other:?}"),
        }
        let kept = store.get_bytes(&key).expect("get bytes");
        assert_eq!(kept.as_ref(), Some(&data), "{what} was lost");
        store.evict(&key).expect("evict");
    }
    unregister_store(&name);
}
