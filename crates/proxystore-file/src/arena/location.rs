//! The location part of an arena key: `arena:<name>:<slot>:<gen>:<offset>`
//! (the object's length is the key's size).

use std::fmt;

use proxystore_core::{Error, Key, Result};

use super::block::state;
use super::sweep;

const PREFIX: &str = "arena:";

/// Where an arena object is, as its key says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location<'a> {
    /// The arena's name (file name without `.arena`).
    pub(crate) name: &'a str,
    /// Index of its slot header.
    pub(crate) slot: u64,
    /// Generation the slot had when the object was published.
    pub(crate) gen: u64,
    /// Offset of its block in the arena file.
    pub(crate) offset: u64,
    /// Its length (the key's size; not printed in the location).
    pub(crate) len: u64,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}:{}:{}",
            self.name, self.slot, self.gen, self.offset
        )
    }
}

/// An [`Error::InvalidKey`] for `key`.
pub(crate) fn invalid(key: &Key, reason: &'static str) -> Error {
    Error::InvalidKey {
        text: key.to_string().chars().take(200).collect(),
        reason,
    }
}

fn number(key: &Key, text: &str, what: &'static str) -> Result<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(key, what));
    }
    text.parse().map_err(|_| invalid(key, what))
}

impl<'a> Location<'a> {
    /// The arena location of `key`: `Ok(None)` for a key without a
    /// location (a file object); a typed error for any other location.
    pub(crate) fn of(key: &'a Key) -> Result<Option<Self>> {
        let Some(text) = key.location() else {
            return Ok(None);
        };
        let rest = text.strip_prefix(PREFIX).ok_or_else(|| {
            invalid(
                key,
                "a file connector key's location is arena:NAME:SLOT:GEN:OFFSET",
            )
        })?;
        let mut parts = rest.split(':');
        let (Some(name), Some(slot), Some(gen), Some(offset), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid(
                key,
                "an arena location has four fields after 'arena:'",
            ));
        };
        if sweep::parse_name(name).is_none() {
            return Err(invalid(key, "the arena name is not PID-START-RANDOM"));
        }
        let gen = number(key, gen, "the generation is not a decimal number")?;
        if gen == 0 || gen > state::GEN_MAX {
            return Err(invalid(key, "the generation is out of range"));
        }
        let len = key
            .size()
            .ok_or_else(|| invalid(key, "an arena key needs the object size (<id>.<size>)"))?;
        Ok(Some(Location {
            name,
            slot: number(key, slot, "the slot is not a decimal number")?,
            gen,
            offset: number(key, offset, "the offset is not a decimal number")?,
            len,
        }))
    }
}
