//! The text form of a binary peer address (a UCX worker address, a
//! libfabric endpoint name): `<scheme><base64url of the address and its
//! 64-bit FNV-1a checksum>`. Transports parse such addresses without
//! knowing their length, and some abort the process on a malformed one, so
//! nothing from a key reaches a transport unless it is intact.

use base64::Engine as _;
use proxystore_core::{Error, Result};

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// FNV-1a, 64 bits: a checksum every build computes alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `scheme` (e.g. `ucx://`) and `raw` with its checksum, base64url.
pub fn encode(scheme: &str, raw: &[u8]) -> String {
    let mut blob = Vec::with_capacity(raw.len() + 8);
    blob.extend_from_slice(raw);
    blob.extend_from_slice(&fnv1a(raw).to_le_bytes());
    format!("{scheme}{}", b64().encode(blob))
}

/// The raw address inside `address`, if it has `scheme` and is intact;
/// otherwise [`Error::InvalidKey`] saying what is wrong.
pub fn decode(scheme: &str, address: &str) -> Result<Vec<u8>> {
    let invalid = |reason| Error::InvalidKey {
        text: address.chars().take(200).collect(),
        reason,
    };
    let mut blob = address
        .strip_prefix(scheme)
        .and_then(|b| b64().decode(b).ok())
        .ok_or_else(|| invalid("an owner address is <scheme><base64url address>"))?;
    if blob.len() <= 8 {
        return Err(invalid("owner address too short"));
    }
    let sum = blob.split_off(blob.len() - 8);
    if sum != fnv1a(&blob).to_le_bytes() {
        return Err(invalid(
            "owner address fails its checksum (truncated or corrupted)",
        ));
    }
    Ok(blob)
}

/// Binary addresses run to hundreds of characters; messages show the start.
pub fn abbreviate(address: &str) -> String {
    if address.chars().count() > 48 {
        format!("{}...", address.chars().take(48).collect::<String>())
    } else {
        address.to_string()
    }
}

/// Whether an endpoint only accepts connections from this host.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return false;
    };
    if scheme != "tcp" {
        return matches!(scheme, "ipc" | "inproc" | "mock");
    }
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEME: &str = "ucx://";

    #[test]
    fn addresses_round_trip_and_damage_is_caught() {
        let raw: Vec<u8> = (0..150u8).collect();
        let address = encode(SCHEME, &raw);
        assert_eq!(decode(SCHEME, &address).unwrap(), raw);
        // Every truncation and every single-character change is refused.
        for cut in SCHEME.len()..address.len() {
            assert!(decode(SCHEME, &address[..cut]).is_err(), "cut at {cut}");
        }
        for at in SCHEME.len()..address.len() {
            let mut damaged = address.clone().into_bytes();
            damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
            let damaged = String::from_utf8(damaged).unwrap();
            assert!(decode(SCHEME, &damaged).is_err(), "change at {at}");
        }
        assert!(decode(SCHEME, "ucx://").is_err());
        assert!(decode(SCHEME, "tcp://1.2.3.4:5").is_err());
        assert!(decode("ofi://", &address).is_err(), "another scheme");
    }

    #[test]
    fn long_addresses_are_cut_on_character_boundaries() {
        let address = format!("ucx://{}", "é".repeat(60));
        assert_eq!(abbreviate(&address).chars().count(), 51);
        assert_eq!(abbreviate("ucx://short"), "ucx://short");
    }
}
