//! Keys in Python: `proxystore_rs.RustKey(text)`, a named tuple (defined in
//! the package's Python part) holding a Rust [`Key`]'s text form, so it
//! pickles inside proxies and hashes in the store's cache. Python
//! ProxyStore's own `RedisKey(redis_key=<uuid>)` and `FileKey(filename=
//! <uuid>)` are taken too: they name the object a Rust `RedisConnector`
//! with `prefix = ""` and `key_format = uuid`, or a file connector with
//! `layout = python`, stores under that UUID.

use proxystore::{Key, ObjectId};
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
    } else if let Some(uuid) = string_attr(obj, "redis_key") {
        return key_of_uuid(&uuid).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}: RedisKey.redis_key {uuid:?} is not a UUID (proxystore-rs reads Python ProxyStore's Redis keys with prefix='' and key_format='uuid')"
            ))
        });
    } else if let Some(uuid) = string_attr(obj, "filename") {
        return key_of_uuid(&uuid).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{what}: FileKey.filename {uuid:?} is not a UUID (proxystore-rs reads Python ProxyStore's files with layout='python')"
            ))
        });
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
    string_attr(obj, "text")
}

/// The string attribute `name` of `obj`, if it has one.
fn string_attr(obj: &Bound<'_, PyAny>, name: &str) -> Option<String> {
    let value = obj.getattr(name).ok()?;
    let s = value.cast::<PyString>().ok()?;
    s.to_cow().ok().map(|c| c.into_owned())
}

/// The key whose id is `uuid` (hyphenated or 32 hex digits).
fn key_of_uuid(uuid: &str) -> Option<Key> {
    ObjectId::parse_uuid(uuid).map(Key::new)
}
