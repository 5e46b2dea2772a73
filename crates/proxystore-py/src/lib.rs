//! Python bindings of proxystore-rs: the `proxystore_rs` package's Rust
//! part (`proxystore_rs._native`), built into an abi3 wheel by maturin.
//!
//! Its connectors follow Python ProxyStore 1.1's connector protocol, so a
//! `proxystore.store.Store` can use them and rebuild them in other
//! processes from `Store.config()`. See docs/python.md.

mod buffer;
mod connector;
mod errors;
mod keys;
mod named;

use pyo3::prelude::*;

/// The extension module `proxystore_rs._native`; `proxystore_rs`
/// re-exports everything in it.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    proxystore::register_connectors();
    m.add_class::<connector::PyConnector>()?;
    m.add_class::<buffer::RustBuffer>()?;
    named::add_to(m)?;
    errors::add_to(m)?;
    m.add_function(wrap_pyfunction!(compiled_connectors, m)?)?;
    m.add_function(wrap_pyfunction!(buffer::concat, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// The connector kinds compiled into this build (`local`, `multi`, `file`,
/// `shm`, `zmq`, ...): what `Connector(kind, ...)` accepts.
#[pyfunction]
fn compiled_connectors() -> Vec<&'static str> {
    proxystore::compiled_connectors()
}
