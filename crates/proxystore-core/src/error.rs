//! The one error type every connector and the store return.

use std::time::Duration;

/// Result alias used across proxystore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a store, a proxy or a connector.
///
/// Variants are semantic (what failed) and carry where it failed (key, path,
/// address, connector), so a message is enough to act on. Connectors map their
/// native error codes to these in one function each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The key names no object (used where absence is an error, e.g. proxy resolution).
    #[error("object {key} not found in store '{store}'")]
    NotFound {
        /// Store that was asked.
        store: String,
        /// Text form of the missing key.
        key: String,
    },
    /// A key's text form could not be parsed.
    #[error("malformed key '{text}': {reason}")]
    InvalidKey {
        /// The text that was given (truncated to 200 characters).
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An operation did not finish in time.
    #[error("{connector}: {op} timed out after {after:?}")]
    Timeout {
        /// Connector kind.
        connector: String,
        /// Operation that timed out.
        op: &'static str,
        /// How long was waited.
        after: Duration,
    },
    /// The connector cannot do this operation.
    #[error("the {connector} connector does not support {op}")]
    Unsupported {
        /// Connector kind.
        connector: String,
        /// Operation that was asked for.
        op: &'static str,
    },
    /// A peer (data server, daemon, rank) could not be reached or vanished.
    #[error("peer {address} unreachable: {reason}")]
    PeerUnreachable {
        /// Address of the peer.
        address: String,
        /// What happened.
        reason: String,
    },
    /// A configuration was invalid or cannot be used in this process.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No connector factory is registered under this kind.
    #[error("unknown connector '{kind}' (known: {known}); enable its Cargo feature and call proxystore::register_connectors()")]
    UnknownConnector {
        /// Kind that was asked for.
        kind: String,
        /// Kinds registered in this process, comma separated.
        known: String,
    },
    /// The connector or store was closed.
    #[error("the {connector} connector is closed")]
    Closed {
        /// Connector kind or store name.
        connector: String,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and on which path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding or decoding a value failed.
    #[error("{codec} codec could not {op} a value of type {type_name}: {reason}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// `encode` or `decode`.
        op: &'static str,
        /// Rust type involved.
        type_name: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A value or frame is larger than a configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A store with this name is already registered.
    #[error("a store named '{0}' is already registered")]
    StoreExists(String),
    /// A lifetime was used after it ended.
    #[error("lifetime has ended; no more keys can be bound to it")]
    LifetimeEnded,
    /// A peer or server refused the request because the caller is not
    /// authenticated or not authorized (a bad token, a wrong password, an
    /// ACL). Not retryable: the same credentials fail again.
    #[error("{connector}: {address} refused the request: {reason}")]
    Unauthorized {
        /// Connector kind.
        connector: String,
        /// Address of the peer or server that refused.
        address: String,
        /// Why, as the peer said it.
        reason: String,
    },
    /// An internal invariant did not hold: a bug in proxystore or in a
    /// connector, not bad input or configuration (e.g. a batch put of one
    /// object that returned no key).
    #[error("internal error (a bug, please report it): {what}")]
    Internal {
        /// Which invariant failed.
        what: &'static str,
    },
    /// A task run by an executor failed: its body panicked, or the process
    /// running it does not know it.
    #[error("task '{task}' failed: {reason}")]
    TaskFailed {
        /// The task's name.
        task: String,
        /// What happened (a panic's message, a missing registration).
        reason: String,
    },
    /// Any other failure inside a transport library.
    #[error("{connector}: {source}")]
    Transport {
        /// Connector kind.
        connector: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Builds an [`Error::Io`] naming what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether trying the same operation again may succeed (timeouts,
    /// unreachable peers, interrupted I/O); `false` for bad input or
    /// config, refused credentials ([`Error::Unauthorized`]) and bugs
    /// ([`Error::Internal`]).
    pub fn is_retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            Error::Timeout { .. } | Error::PeerUnreachable { .. } => true,
            // Same credentials, same refusal; same code, same bug.
            Error::Unauthorized { .. } | Error::Internal { .. } => false,
            Error::Io { source, .. } => matches!(
                source.kind(),
                K::Interrupted | K::WouldBlock | K::TimedOut | K::ConnectionReset
            ),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_bugs_are_not_retryable_and_say_where() {
        let refused = Error::Unauthorized {
            connector: "zmq".into(),
            address: "10.0.0.2:5555".into(),
            reason: "bad token".into(),
        };
        assert!(!refused.is_retryable());
        let text = refused.to_string();
        assert!(
            text.contains("10.0.0.2:5555") && text.contains("bad token"),
            "{text}"
        );
        let bug = Error::Internal { what: "no key" };
        assert!(!bug.is_retryable() && bug.to_string().contains("no key"));
        let timeout = Error::Timeout {
            connector: "zmq".into(),
            op: "get",
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retryable());
    }
}
