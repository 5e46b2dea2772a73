//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay their corpus on stable. Not part of the API.

use crate::{Error, Key, ObjectId};

/// Parses `data` as a key's text form and checks what a parse promises:
/// malformed text is an [`Error::InvalidKey`] (never a panic); a key that
/// parses prints to a text that parses back to it, survives its serde form,
/// and is what the builder methods make from the same parts.
pub fn key_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = match text.parse::<Key>() {
        Ok(key) => key,
        Err(Error::InvalidKey { .. }) => return,
        Err(other) => panic!("{text:?}: not an InvalidKey error: {other:?}"),
    };
    let printed = key.to_string();
    let again: Key = printed
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
    assert_eq!(again, key, "{text:?} printed as {printed:?}");
    assert_eq!(
        printed.parse::<Key>().map(|k| k.to_string()).ok(),
        Some(printed.clone())
    );
    let json = serde_json::to_string(&key).unwrap_or_else(|e| panic!("{key:?} to json: {e}"));
    let back: Key = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(back, key);
    let mut built = Key::new(ObjectId::from_u128(key.id().as_u128()));
    if let Some(size) = key.size() {
        built = built.with_size(size);
    }
    if let Some(location) = key.location() {
        built = built
            .with_location(location)
            .unwrap_or_else(|e| panic!("{text:?}: location refused by with_location: {e}"));
    }
    assert_eq!(built, key);
}

/// Keys in their text form: every optional part, the widest values, and a
/// few near misses.
pub fn key_text_seeds() -> Vec<Vec<u8>> {
    let id = ObjectId::from_u128(0x0f3c_5a5a_0000_0000_1234_5678_9abc_def0);
    let mut seeds = vec![
        Key::new(id).to_string(),
        Key::new(id).with_size(1_048_576).to_string(),
        Key::new(ObjectId::from_u128(u128::MAX))
            .with_size(u64::MAX)
            .to_string(),
        "0F3C5A5A000000001234567890ABCDEF.007".to_string(),
        "00000000000000000000000000000abc.".to_string(),
        "00000000000000000000000000000abc@".to_string(),
        "00000000000000000000000000000abc.18446744073709551616".to_string(),
    ];
    for location in [
        "tcp://10.0.0.7:5555",
        "ucx://AAEC",
        "ofi://tcp;ofi_rxm/AAEC",
        "[::1]:6379@x",
        "é",
    ] {
        if let Ok(key) = Key::new(id).with_size(42).with_location(location) {
            seeds.push(key.to_string());
        }
        seeds.push(format!("{id}@{location}"));
    }
    // Locations at the length limit and one byte over it.
    for len in [
        crate::key::MAX_LOCATION_LEN,
        crate::key::MAX_LOCATION_LEN + 1,
    ] {
        seeds.push(format!("{id}@{}", "l".repeat(len)));
    }
    seeds.into_iter().map(String::into_bytes).collect()
}
