//! Object keys and their stable text form.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// Longest location accepted in a key's text form.
pub const MAX_LOCATION_LEN: usize = 4096;

/// A 128-bit object identifier, unique with overwhelming probability across
/// processes and nodes (random, not a counter).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(u128);

impl ObjectId {
    /// A new random id.
    pub fn random() -> Self {
        ObjectId(fastrand::u128(..))
    }

    /// The id as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Builds an id from a number.
    pub fn from_u128(v: u128) -> Self {
        ObjectId(v)
    }

    /// The id as a hyphenated UUID (`8-4-4-4-12` lowercase hex digits):
    /// how Python ProxyStore names objects (`str(uuid4())`), so connectors
    /// in Python's layouts store under it.
    pub fn to_uuid_string(self) -> String {
        let id = self.0;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            id >> 96,
            (id >> 80) & 0xffff,
            (id >> 64) & 0xffff,
            (id >> 48) & 0xffff,
            id & 0xffff_ffff_ffff
        )
    }

    /// The id a UUID names: hyphenated (36 characters, as
    /// [`ObjectId::to_uuid_string`] writes) or 32 hex digits; `None` for
    /// anything else.
    pub fn parse_uuid(text: &str) -> Option<Self> {
        let groups: Vec<&str> = text.split('-').collect();
        let well_formed = match groups.as_slice() {
            [hex] => hex.len() == 32,
            [a, b, c, d, e] => [a.len(), b.len(), c.len(), d.len(), e.len()] == [8, 4, 4, 4, 12],
            _ => false,
        };
        if !well_formed
            || !groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return None;
        }
        u128::from_str_radix(&groups.concat(), 16)
            .ok()
            .map(ObjectId)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Names one object in a connector.
///
/// A key is an [`ObjectId`], optionally the object's size in bytes (network
/// connectors use it to allocate or post a one-sided read before the data
/// arrives) and optionally a location naming where the object lives (the
/// owning peer's address, for peer-to-peer connectors). Cloning is cheap.
///
/// The text form is `<32 hex digits>[.<size>][@<location>]`, for example
/// `0f3c...9a.1048576@tcp://10.0.0.7:5555`. It round-trips through
/// [`Display`](fmt::Display) and [`FromStr`], and is also the serde form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    id: ObjectId,
    size: Option<u64>,
    location: Option<Arc<str>>,
}

impl Key {
    /// A key with only an id.
    pub fn new(id: ObjectId) -> Self {
        Key {
            id,
            size: None,
            location: None,
        }
    }

    /// A key with a new random id.
    pub fn random() -> Self {
        Key::new(ObjectId::random())
    }

    /// Sets the object's size.
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Sets the location; fails if it could not survive the text form.
    pub fn with_location(mut self, location: &str) -> Result<Self> {
        check_location(location, location)?;
        self.location = Some(Arc::from(location));
        Ok(self)
    }

    /// The object id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The object's size in bytes, if the connector recorded it.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Where the object lives, if the connector records it.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }
}

fn invalid(text: &str, reason: &'static str) -> Error {
    Error::InvalidKey {
        text: text.chars().take(200).collect(),
        reason,
    }
}

fn check_location(location: &str, text: &str) -> Result<()> {
    if location.is_empty() {
        return Err(invalid(text, "empty location after '@'"));
    }
    if location.len() > MAX_LOCATION_LEN {
        return Err(invalid(text, "location longer than 4096 bytes"));
    }
    if location
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            text,
            "location contains whitespace or control characters",
        ));
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(size) = self.size {
            write!(f, ".{size}")?;
        }
        if let Some(loc) = &self.location {
            write!(f, "@{loc}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl FromStr for Key {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let (head, location) = match text.split_once('@') {
            Some((head, loc)) => {
                check_location(loc, text)?;
                (head, Some(Arc::from(loc)))
            }
            None => (text, None),
        };
        let (hex, size) = match head.split_once('.') {
            Some((hex, size)) => {
                if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(text, "size after '.' is not a decimal number"));
                }
                let size = size
                    .parse::<u64>()
                    .map_err(|_| invalid(text, "size does not fit in 64 bits"))?;
                (hex, Some(size))
            }
            None => (head, None),
        };
        if hex.len() != 32 {
            return Err(invalid(text, "object id must be exactly 32 hex digits"));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(text, "object id contains a non-hex character"));
        }
        let id =
            u128::from_str_radix(hex, 16).map_err(|_| invalid(text, "object id is not hex"))?;
        Ok(Key {
            id: ObjectId(id),
            size,
            location,
        })
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uuid_forms_round_trip_and_malformed_ones_are_refused() {
        let id = ObjectId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let uuid = id.to_uuid_string();
        assert_eq!(uuid, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(ObjectId::parse_uuid(&uuid), Some(id));
        assert_eq!(ObjectId::parse_uuid(&id.to_string()), Some(id));
        for bad in [
            "",
            "01234567-89ab-cdef-0011-22334455667",
            "0123456789ab-cdef-0011-2233-44556677",
            "01234567-89ab-cdef-0011-22334455667g",
            "+1234567-89ab-cdef-0011-223344556677",
            "01234567-89ab-cdef-0011-223344556677-",
        ] {
            assert_eq!(ObjectId::parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_form_examples() {
        let k = Key::new(ObjectId::from_u128(0xabc)).with_size(42);
        assert_eq!(k.to_string(), "00000000000000000000000000000abc.42");
        let k = k.with_location("tcp://127.0.0.1:5555").unwrap();
        assert_eq!(
            k.to_string(),
            "00000000000000000000000000000abc.42@tcp://127.0.0.1:5555"
        );
        assert_eq!(k.to_string().parse::<Key>().unwrap(), k);
    }

    #[test]
    fn malformed_keys_are_typed_errors() {
        for bad in [
            "",
            "xyz",
            "0000000000000000000000000000abc",
            "000000000000000000000000000000abcd",
            "0000000000000000000000000000zzzz",
            "00000000000000000000000000000abc.",
            "00000000000000000000000000000abc.-1",
            "00000000000000000000000000000abc.99999999999999999999999",
            "00000000000000000000000000000abc@",
            "00000000000000000000000000000abc@a b",
        ] {
            match bad.parse::<Key>() {
                Err(Error::InvalidKey { .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn text_round_trip(id: u128, size: Option<u64>, loc in proptest::option::of("[!-~]{1,64}")) {
            let mut k = Key::new(ObjectId::from_u128(id));
            if let Some(s) = size { k = k.with_size(s); }
            if let Some(l) = &loc { k = k.with_location(l).unwrap(); }
            let text = k.to_string();
            prop_assert_eq!(text.parse::<Key>().unwrap(), k.clone());
            let json = serde_json::to_string(&k).unwrap();
            prop_assert_eq!(serde_json::from_str::<Key>(&json).unwrap(), k);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,80}") {
            let _ = text.parse::<Key>();
        }
    }
}
