//! Two-process get latency: `get_loop serve SIZE` prints a key and serves
//! it; `get_loop get KEY N` fetches it N times through a `Store` and
//! prints the median.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use proxystore_core::{Bytes, Connector, Key, Store};
use proxystore_ucx::{UcxConnector, UcxConnectorExt};

fn main() {
    std::env::set_var("PROXYSTORE_UCX_SECRET", "example");
    let args: Vec<String> = std::env::args().collect();
    let c = UcxConnector::open().unwrap();
    if args[1] == "serve" {
        let size: usize = args[2].parse().unwrap();
        let key = c.put(Bytes::from(vec![7u8; size])).unwrap();
        println!("{key}");
        std::thread::sleep(std::time::Duration::from_secs(120));
    } else {
        let key: Key = args[2].parse().unwrap();
        let n: usize = args[3].parse().unwrap();
        // Through a Store, as a consumer's proxy resolves (cache off, so
        // every get crosses the transport).
        let store = Store::builder("get-loop", std::sync::Arc::new(c))
            .cache_size(0)
            .build();
        let mut t = Vec::new();
        for _ in 0..n {
            let s = Instant::now();
            let v = store.get_bytes(&key).unwrap().unwrap();
            t.push(s.elapsed());
            std::hint::black_box(v);
        }
        t.sort();
        println!("median {:?} p10 {:?}", t[n / 2], t[n / 10]);
    }
}
