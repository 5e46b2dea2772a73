//! Small pieces every connector implementation repeats: the closed flag
//! behind [`Error::Closed`], random-id keys handed out before their data
//! ([`DeferrableConnector::new_key`]), and `put` as a batch of one.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::connector::Connector;
#[cfg(doc)]
use crate::connector::DeferrableConnector;
use crate::error::{Error, Result};
use crate::key::Key;

/// Whether a connector handle was closed. Every operation starts with
/// [`check`](Self::check); [`Connector::close`] calls
/// [`close`](Self::close).
#[derive(Debug, Default)]
pub struct ClosedFlag(AtomicBool);

impl ClosedFlag {
    /// An open flag.
    pub const fn new() -> Self {
        ClosedFlag(AtomicBool::new(false))
    }

    /// `Ok` while open; [`Error::Closed`] naming connector `kind` after
    /// [`close`](Self::close).
    pub fn check(&self, kind: &str) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed {
                connector: kind.to_owned(),
            });
        }
        Ok(())
    }

    /// Marks the connector closed. Idempotent.
    pub fn close(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// [`DeferrableConnector::new_key`] of a connector whose keys are random
    /// ids chosen by the client: a fresh random key, if open.
    pub fn new_key(&self, kind: &str) -> Result<Key> {
        self.check(kind)?;
        Ok(Key::random())
    }
}

/// [`Connector::put`] of a connector whose native operation is
/// [`Connector::put_batch`]: a batch of one. A batch that returns no key is
/// [`Error::Internal`].
///
/// Only for connectors that override `put_batch`: the default `put_batch`
/// calls `put`, and the two would call each other forever.
pub fn put_via_batch<C: Connector + ?Sized>(connector: &C, data: Bytes) -> Result<Key> {
    connector
        .put_batch(vec![data])?
        .pop()
        .ok_or(Error::Internal {
            what: "put_batch of one object returned no key",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::{Capabilities, ConnectorConfig};

    #[test]
    fn closed_flag_fails_checks_after_close() {
        let flag = ClosedFlag::new();
        assert!(flag.check("file").is_ok() && flag.new_key("file").is_ok());
        flag.close();
        flag.close();
        assert!(
            matches!(flag.check("shm"), Err(Error::Closed { connector }) if connector == "shm")
        );
        assert!(matches!(flag.new_key("shm"), Err(Error::Closed { .. })));
    }

    /// A batch-native connector whose batch loses objects.
    #[derive(Debug)]
    struct Lossy;

    impl Connector for Lossy {
        fn kind(&self) -> &str {
            "lossy"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::none()
        }
        fn put(&self, data: Bytes) -> Result<Key> {
            put_via_batch(self, data)
        }
        fn put_batch(&self, _: Vec<Bytes>) -> Result<Vec<Key>> {
            Ok(Vec::new())
        }
        fn get(&self, _: &Key) -> Result<Option<Bytes>> {
            Ok(None)
        }
        fn exists(&self, _: &Key) -> Result<bool> {
            Ok(false)
        }
        fn evict(&self, _: &Key) -> Result<()> {
            Ok(())
        }
        fn config(&self) -> ConnectorConfig {
            ConnectorConfig::new("lossy")
        }
        fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_without_a_key_is_an_internal_error() {
        let err = Lossy.put(Bytes::new()).expect_err("no key");
        assert!(matches!(err, Error::Internal { .. }));
        assert!(!err.is_retryable());
    }
}
