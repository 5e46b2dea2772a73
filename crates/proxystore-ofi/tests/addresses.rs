//! Address text forms: round trips, damage, and other providers.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

mod common;

use proxystore_core::Error;

#[test]
fn addresses_round_trip_and_damage_is_refused() {
    for provider in common::PROVIDERS {
        let Some(e) = common::engine(provider) else {
            continue;
        };
        let text = e.address();
        let scheme = format!("ofi://{}/", e.provider());
        assert!(text.starts_with(&scheme), "{text}");
        assert_eq!(e.parse_address(&text).unwrap(), e.raw_address());
        for cut in 0..text.len() {
            assert!(e.parse_address(&text[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..text.len() {
            let mut damaged = text.clone().into_bytes();
            damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
            let damaged = String::from_utf8(damaged).unwrap();
            let err = e.parse_address(&damaged).unwrap_err();
            if at >= scheme.len() {
                assert!(
                    matches!(err, Error::InvalidKey { .. }),
                    "change at {at}: {err}"
                );
            }
        }
    }
}

#[test]
fn an_address_of_another_provider_is_a_config_error() {
    let Some(e) = common::engine("shm") else {
        return;
    };
    let other = proxystore_peer::address::encode("ofi://tcp;ofi_rxm/", e.raw_address());
    assert!(matches!(e.parse_address(&other), Err(Error::Config(_))));
    assert!(matches!(
        e.parse_address("ucx://AAAA"),
        Err(Error::InvalidKey { .. })
    ));
}
