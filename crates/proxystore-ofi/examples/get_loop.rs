//! Two-process get latency over libfabric (provider from `FI_PROVIDER`):
//!
//! Run as `cargo run --release -p proxystore-ofi --example ofi_get_loop -- ...`:
//!
//! - `get_loop serve SIZE` puts an object of SIZE bytes, prints
//!   `KEY=<key>` and serves it for 120 s.
//! - `get_loop serveraw SIZE` registers an object of SIZE bytes on a bare
//!   endpoint whose thread spins answering requests with it, prints
//!   `RAW=<address> <addr> <len> <remote key hex>` and serves for 120 s. (A
//!   process of its own: on a 2-core machine its spinning thread would take
//!   a core from a connector beside it.)
//! - `get_loop get KEY N` fetches the key N times through a `Store` (cache
//!   off) and prints the median.
//! - `get_loop raw "RAW" N` does N bare `fi_read`s of the registered copy
//!   (what `ofi-raw` times in one process) and prints the median.
//! - `get_loop rawmsg "RAW" N` sends N empty requests to the second
//!   endpoint, which answers each with the object (what `ofi-raw-msg`
//!   times), and prints the median.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use proxystore_core::{Bytes, Connector, Key, Store};
use proxystore_ofi::{Engine, OfiConnector, PeerConfig, KIND, SERVER_ROUTE};
use proxystore_peer::rma::Region;

fn main() {
    std::env::set_var("PROXYSTORE_OFI_SECRET", "example");
    let args: Vec<String> = std::env::args().collect();
    match args[1].as_str() {
        "serve" => serve(args[2].parse().unwrap()),
        "serveraw" => serve_raw(args[2].parse().unwrap()),
        "get" => get(args[2].parse().unwrap(), args[3].parse().unwrap()),
        "raw" => raw(&args[2], args[3].parse().unwrap()),
        "rawmsg" => raw_messages(&args[2], args[3].parse().unwrap()),
        other => panic!("unknown mode {other}: serve|serveraw SIZE | get KEY N | raw|rawmsg RAW N"),
    }
}

fn connector() -> OfiConnector {
    OfiConnector::with_config(PeerConfig::new(KIND, "ofi://")).unwrap()
}

fn serve(size: usize) {
    let c = connector();
    let key = c.put(Bytes::from(vec![7u8; size])).unwrap();
    println!("KEY={key}");
    std::thread::sleep(Duration::from_secs(120));
}

fn serve_raw(size: usize) {
    let payload = Bytes::from(vec![7u8; size]);
    let engine = std::sync::Arc::new(Engine::open(None).unwrap());
    let requests = engine.listen().unwrap();
    let staged = engine.stage(&payload).unwrap_or_else(|| payload.clone());
    let registration = engine.register(&staged).unwrap();
    let hex: String = registration
        .remote_key
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "RAW={} {} {} {hex}",
        engine.address(),
        staged.as_ptr() as u64,
        staged.len()
    );
    // Spins, so raw reads and requests are served at once (software-RMA
    // providers serve a read only while the target is progressed).
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        engine.poll();
        while let Ok(Ok(m)) = requests.try_recv() {
            let reply = vec![payload.clone()];
            let _ = engine.send(&m.from, m.reply_route, SERVER_ROUTE, reply);
        }
    }
}

fn median(mut t: Vec<Duration>) -> String {
    t.sort();
    format!("median {:?} p10 {:?}", t[t.len() / 2], t[t.len() / 10])
}

fn get(key: Key, n: usize) {
    let store = Store::builder("get-loop", std::sync::Arc::new(connector()))
        .cache_size(0)
        .build();
    let t = (0..n)
        .map(|_| {
            let s = Instant::now();
            std::hint::black_box(store.get_bytes(&key).unwrap().unwrap());
            s.elapsed()
        })
        .collect();
    println!("{}", median(t));
}

/// An endpoint of the provider `address` names, and the raw address.
fn endpoint_for(address: &str) -> (Engine, Vec<u8>) {
    let provider = address
        .strip_prefix("ofi://")
        .and_then(|p| p.split_once('/'))
        .map(|(p, _)| p);
    let engine = Engine::open(provider).unwrap();
    let owner = engine.parse_address(address).unwrap();
    (engine, owner)
}

fn raw_messages(spec: &str, n: usize) {
    let (engine, owner) = endpoint_for(spec.split(' ').next().unwrap());
    let (route, replies) = engine.open_route();
    let t = (0..n)
        .map(|_| {
            let s = Instant::now();
            engine
                .send(&owner, SERVER_ROUTE, route, vec![Bytes::new()])
                .unwrap();
            let reply = engine.wait(&replies, Duration::from_secs(30)).unwrap();
            std::hint::black_box(reply);
            s.elapsed()
        })
        .collect();
    println!("{}", median(t));
}

fn raw(spec: &str, n: usize) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let (engine, owner) = endpoint_for(parts[0]);
    let remote_key: Vec<u8> = (0..parts[3].len() / 2)
        .map(|i| u8::from_str_radix(&parts[3][2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let region = Region {
        addr: parts[1].parse().unwrap(),
        len: parts[2].parse().unwrap(),
        remote_key: Bytes::from(remote_key),
    };
    let t = (0..n)
        .map(|_| {
            let s = Instant::now();
            let got = engine
                .read(&owner, region.clone(), Duration::from_secs(30))
                .unwrap();
            std::hint::black_box(got);
            s.elapsed()
        })
        .collect();
    println!("{}", median(t));
}
