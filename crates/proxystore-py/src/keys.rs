//! Keys in Python: `proxystore_rs.RustKey(text)`, a named tuple (defined in
//! the package's Python part) holding a Rust [`Key`]'s text form, so it
//! pickles inside proxies and hashes in the store's cache.

use proxystore::Key;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyType};

use crate::errors;

static RUST_KEY: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `key` as a `proxystore_rs.RustKey`.
pub(crate) fn to_py<'py>(py: Python<'py>, key: &Key) -> PyResult<Bound<'py, PyAny>> {
    let class = RUST_KEY.import(py, "proxystore_rs", "RustKey")?;
    class.call1((key.to_string(),))
}

/// The Rust key a `RustKey` (or its text) names; `what` says which call
/// took it, for the error.
pub(crate) fn from_py(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<Key> {
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if let Some(text) = text_field(obj) {
        text
    } else {
        let type_name = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(PyTypeError::new_err(format!(
            "{what}: expected a proxystore_rs.RustKey (or its text), got {type_name}"
        )));
    };
    text.parse::<Key>().map_err(|e| errors::to_py(what, e))
}

/// The `text` field of a `RustKey`, or of any object with a string `text`.
fn text_field(obj: &Bound<'_, PyAny>) -> Option<String> {
    let text = obj.getattr("text").ok()?;
    let s = text.cast::<PyString>().ok()?;
    s.to_cow().ok().map(|c| c.into_owned())
}
