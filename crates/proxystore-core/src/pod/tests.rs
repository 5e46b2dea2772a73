use super::*;
use crate::codec::Codec;
use crate::local::LocalConnector;
use crate::store::Store;

use crate::testing::Aligned16;

fn store() -> Store {
    Store::builder("pod-tests", std::sync::Arc::new(LocalConnector::new()))
        .cache_size(0)
        .build()
}

#[test]
fn encode_and_decode_copy_nothing() {
    let a = PodArray::from_slice(&[1.0f64, 2.0, 3.0]);
    assert_eq!(a.stored_bytes().as_ptr() as usize % 64, 0);
    let enc = Codec::Bincode.encode(&a).unwrap();
    assert_eq!(enc.as_ptr(), a.stored_bytes().as_ptr());
    let (back, realigned): (PodArray<f64>, u64) = Codec::Bincode
        .decode_counting_realigned(enc.clone())
        .unwrap();
    assert_eq!(realigned, 0);
    assert_eq!(&back[..], &[1.0, 2.0, 3.0]);
    assert_eq!(back.as_ptr().cast::<u8>(), enc[64..].as_ptr());
}

#[test]
fn store_get_is_a_view_of_the_connectors_bytes() {
    let s = store();
    let a = PodArray::build(1000, |v: &mut [u32]| {
        v.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = i as u32 * 3);
    });
    let key = s.put(&a).unwrap();
    let raw = s.get_bytes(&key).unwrap().unwrap();
    let view: PodArray<u32> = s.get(&key).unwrap().unwrap();
    assert_eq!(view, a);
    assert_eq!(view.as_ptr().cast::<u8>(), raw[64..].as_ptr());
    assert_eq!(s.metrics().realigned, 0);
    // Read as an owned vector too.
    let owned: Vec<u32> = s.get(&key).unwrap().unwrap();
    assert_eq!(owned.as_slice(), &a[..]);
}

#[test]
fn vec_layout_reads_as_a_view() {
    let v: Vec<i64> = (0..500).collect();
    let enc = Codec::Bincode.encode(&v).unwrap();
    let (view, realigned): (PodArray<i64>, u64) =
        Codec::Bincode.decode_counting_realigned(enc).unwrap();
    assert_eq!(realigned, 0);
    assert_eq!(&view[..], &v[..]);
}

#[test]
fn misaligned_elements_are_copied_once_and_counted() {
    let a = PodArray::from_slice(&[2.5f64; 100]);
    // The same bytes one byte off: the elements are no longer 8-aligned.
    let mut shifted = vec![0u8; a.stored_bytes().len() + 1];
    shifted[1..].copy_from_slice(a.stored_bytes());
    let off = bytes::Bytes::from(shifted).slice(1..);
    assert_ne!(off[64..].as_ptr() as usize % 8, 0);
    let s = store();
    let key = s.put_bytes(off).unwrap();
    let view: PodArray<f64> = s.get(&key).unwrap().unwrap();
    assert_eq!(view, a);
    assert_eq!(view.as_ptr() as usize % 64, 0);
    assert_eq!(s.metrics().realigned, 1);
    // A 16-aligned record in the Vec layout (elements at offset 8 of an
    // aligned buffer) is misaligned the same way.
    let w: Vec<Aligned16> = (0..10).map(|i| Aligned16 { a: i, b: i * 2 }).collect();
    let mut vec_layout = (w.len() as u64).to_le_bytes().to_vec();
    vec_layout.extend_from_slice(bytemuck::cast_slice(&w));
    let vec_layout = PodArray::<u8>::from_slice(&vec_layout)
        .stored_bytes()
        .slice(64..);
    let (view, realigned): (PodArray<Aligned16>, u64) = Codec::Bincode
        .decode_counting_realigned(vec_layout)
        .unwrap();
    assert_eq!(realigned, 1);
    assert_eq!(&view[..], &w[..]);
}

#[test]
fn wrong_type_or_length_is_a_codec_error() {
    let a = PodArray::from_slice(&[1i64, 2, 3]);
    let err = Codec::Bincode
        .decode::<PodArray<f64>>(a.stored_bytes().clone())
        .unwrap_err();
    assert!(matches!(err, Error::Codec { .. }), "{err}");
    assert!(err.to_string().contains("<i8"), "{err}");
    let cut = a.stored_bytes().slice(..a.stored_bytes().len() - 3);
    let err = Codec::Bincode.decode::<PodArray<i64>>(cut).unwrap_err();
    assert!(err.to_string().contains("21 bytes follow"), "{err}");
    // 8 + 13 bytes: not a whole number of f64 elements.
    let mut odd = 1u64.to_le_bytes().to_vec();
    odd.extend_from_slice(&[0; 13]);
    let err = Codec::Bincode
        .decode::<PodArray<f64>>(odd.into())
        .unwrap_err();
    assert!(matches!(err, Error::Codec { .. }), "{err}");
    assert!(Codec::Bincode
        .decode::<PodArray<f64>>(Bytes::from_static(b"abc"))
        .is_err());
    // A refusal does not leak into the next decode of another type.
    let n: u32 = Codec::Bincode
        .decode(Codec::Bincode.encode(&7u32).unwrap())
        .unwrap();
    assert_eq!(n, 7);
}

#[test]
fn nested_in_a_struct_through_generic_serde() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Frame {
        step: u32,
        field: PodArray<f32>,
    }
    let f = Frame {
        step: 9,
        field: PodArray::from_slice(&[0.5f32, 1.5, 2.5]),
    };
    let enc = Codec::Bincode.encode(&f).unwrap();
    let back: Frame = Codec::Bincode.decode(enc).unwrap();
    assert_eq!(back, f);
    let json = serde_json::to_string(&f.field).unwrap();
    let back: PodArray<f32> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, f.field);
}

#[test]
fn empty_array_round_trips() {
    let a = PodArray::<f64>::from_slice(&[]);
    let back: PodArray<f64> = Codec::Bincode
        .decode(Codec::Bincode.encode(&a).unwrap())
        .unwrap();
    assert!(back.is_empty());
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_views_with_a_shape() {
    let m = ndarray::Array2::from_shape_fn((3, 4), |(i, j)| (i * 10 + j) as f64);
    let a = PodArray::from_array(&m);
    let v = a.view((3, 4)).unwrap();
    assert_eq!(v, m.view());
    assert!(a.view((5, 4)).is_err());
    // A transposed (not row-major) array is copied in logical order.
    let t = PodArray::from_array(&m.t());
    assert_eq!(t.view((4, 3)).unwrap(), m.t());
}

#[test]
fn put_slice_reads_back_as_a_view_and_as_a_vec() {
    let s = store();
    let values: Vec<i32> = (0..10_000).map(|i| i * 7 - 3).collect();
    let key = s.put_slice(&values).unwrap();
    let view: PodArray<i32> = s.get(&key).unwrap().unwrap();
    assert_eq!(&view[..], &values[..]);
    let owned: Vec<i32> = s.get(&key).unwrap().unwrap();
    assert_eq!(owned, values);
    assert_eq!(s.metrics().realigned, 0);
    let empty = s.put_slice::<f64>(&[]).unwrap();
    assert!(s.get::<PodArray<f64>>(&empty).unwrap().unwrap().is_empty());
}
