//! The Python exceptions of `proxystore_rs` and the one function that maps
//! a Rust [`proxystore::Error`] to them.

use proxystore::Error;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::{create_exception, PyErr};

create_exception!(
    proxystore_rs,
    ProxyStoreError,
    PyException,
    "Base class of every error a proxystore-rs connector raises."
);
create_exception!(
    proxystore_rs,
    ConfigError,
    ProxyStoreError,
    "A connector configuration is invalid or names an unknown kind."
);
create_exception!(
    proxystore_rs,
    InvalidKeyError,
    ProxyStoreError,
    "A key is not a proxystore-rs key (or its text is malformed)."
);
create_exception!(
    proxystore_rs,
    ConnectorClosedError,
    ProxyStoreError,
    "The connector was closed."
);
create_exception!(
    proxystore_rs,
    ConnectorTimeoutError,
    ProxyStoreError,
    "A connector operation did not finish in time."
);
create_exception!(
    proxystore_rs,
    PeerUnreachableError,
    ProxyStoreError,
    "The peer holding an object (data server, daemon) could not be reached."
);
create_exception!(
    proxystore_rs,
    ForkError,
    ProxyStoreError,
    "A connector built in one process was used in a forked child."
);

/// Adds the exception classes to the module.
pub(crate) fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ProxyStoreError", py.get_type::<ProxyStoreError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InvalidKeyError", py.get_type::<InvalidKeyError>())?;
    m.add(
        "ConnectorClosedError",
        py.get_type::<ConnectorClosedError>(),
    )?;
    m.add(
        "ConnectorTimeoutError",
        py.get_type::<ConnectorTimeoutError>(),
    )?;
    m.add(
        "PeerUnreachableError",
        py.get_type::<PeerUnreachableError>(),
    )?;
    m.add("ForkError", py.get_type::<ForkError>())?;
    Ok(())
}

/// `error` as a Python exception whose message starts with what was being
/// done (`what`, e.g. `ZmqConnector.get`); the Rust message says where.
pub(crate) fn to_py(what: &str, error: Error) -> PyErr {
    let msg = format!("{what}: {error}");
    match error {
        Error::Config(_) | Error::UnknownConnector { .. } => ConfigError::new_err(msg),
        Error::InvalidKey { .. } => InvalidKeyError::new_err(msg),
        Error::Closed { .. } => ConnectorClosedError::new_err(msg),
        Error::Timeout { .. } => ConnectorTimeoutError::new_err(msg),
        Error::PeerUnreachable { .. } => PeerUnreachableError::new_err(msg),
        Error::Unsupported { .. } => pyo3::exceptions::PyNotImplementedError::new_err(msg),
        _ => ProxyStoreError::new_err(msg),
    }
}
