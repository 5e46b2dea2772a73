//! One thin class per compiled connector kind. Each fixes the kind and
//! takes the options its `config()` returns as keyword arguments, so Python
//! ProxyStore's `cls(**config())` rebuilds it in another process.

use std::collections::BTreeMap;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::connector::{option_text, options_from, PyConnector};

/// The options of a named class: the leading named argument (if given)
/// and the keyword options.
fn with_first(
    first: Option<(&str, &Bound<'_, PyAny>)>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BTreeMap<String, String>> {
    let mut out = options_from(options)?;
    if let Some((name, value)) = first {
        if let Some(text) = option_text(value)? {
            out.insert(name.to_string(), text);
        }
    }
    Ok(out)
}

/// Objects as files in a directory (`dir`): local disk, NFS, Lustre.
/// Options: `mmap_threshold`, `stripe_count`, `stripe_size`.
#[cfg(feature = "file")]
#[pyclass(module = "proxystore_rs", extends = PyConnector, frozen)]
pub struct FileConnector;

#[cfg(feature = "file")]
#[pymethods]
impl FileConnector {
    #[new]
    #[pyo3(signature = (dir, **options))]
    fn new(
        py: Python<'_>,
        dir: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = with_first(Some(("dir", dir)), options)?;
        let base = PyConnector::build(py, "FileConnector", true, "file", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(FileConnector))
    }
}

/// The file connector on `/dev/shm` (one node); `dir` defaults to
/// `/dev/shm/proxystore-<uid>`.
#[cfg(feature = "file")]
#[pyclass(module = "proxystore_rs", extends = PyConnector, frozen)]
pub struct ShmConnector;

#[cfg(feature = "file")]
#[pymethods]
impl ShmConnector {
    #[new]
    #[pyo3(signature = (dir = None, **options))]
    fn new(
        py: Python<'_>,
        dir: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = with_first(dir.map(|d| ("dir", d)), options)?;
        let base = PyConnector::build(py, "ShmConnector", true, "shm", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(ShmConnector))
    }
}

/// ZeroMQ peer-to-peer: this process serves what it puts on `address`
/// (default `tcp://127.0.0.1:*`, any free port); other processes read it
/// over the network. Options: `server` (a standalone `proxystore serve`
/// to send puts to), `timeout_ms`, `max_object_bytes`.
#[cfg(feature = "zmq")]
#[pyclass(module = "proxystore_rs", extends = PyConnector, frozen)]
pub struct ZmqConnector;

#[cfg(feature = "zmq")]
#[pymethods]
impl ZmqConnector {
    #[new]
    #[pyo3(signature = (address = None, **options))]
    fn new(
        py: Python<'_>,
        address: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = with_first(address.map(|a| ("address", a)), options)?;
        let base = PyConnector::build(py, "ZmqConnector", true, "zmq", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(ZmqConnector))
    }
}

/// A Redis or KeyDB server at `url` (`redis://HOST:PORT`). Options:
/// `prefix`, `timeout_ms`, `max_object_bytes`.
#[cfg(feature = "redis")]
#[pyclass(module = "proxystore_rs", extends = PyConnector, frozen)]
pub struct RedisConnector;

#[cfg(feature = "redis")]
#[pymethods]
impl RedisConnector {
    #[new]
    #[pyo3(signature = (url, **options))]
    fn new(
        py: Python<'_>,
        url: &Bound<'_, PyAny>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = with_first(Some(("url", url)), options)?;
        let base = PyConnector::build(py, "RedisConnector", true, "redis", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(RedisConnector))
    }
}

/// UCX peer-to-peer (one-sided reads of registered memory): this process
/// serves what it puts on its UCP worker. Options: `server`, `timeout_ms`,
/// `max_object_bytes`.
#[cfg(feature = "ucx")]
#[pyclass(module = "proxystore_rs", extends = PyConnector, frozen)]
pub struct UcxConnector;

#[cfg(feature = "ucx")]
#[pymethods]
impl UcxConnector {
    #[new]
    #[pyo3(signature = (address = None, **options))]
    fn new(
        py: Python<'_>,
        address: Option<&Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let options = with_first(address.map(|a| ("address", a)), options)?;
        let base = PyConnector::build(py, "UcxConnector", true, "ucx", options)?;
        Ok(PyClassInitializer::from(base).add_subclass(UcxConnector))
    }
}

/// Adds the named classes this build compiled.
pub(crate) fn add_to(m: &Bound<'_, PyModule>) -> PyResult<()> {
    #[cfg(feature = "file")]
    {
        m.add_class::<FileConnector>()?;
        m.add_class::<ShmConnector>()?;
    }
    #[cfg(feature = "zmq")]
    m.add_class::<ZmqConnector>()?;
    #[cfg(feature = "redis")]
    m.add_class::<RedisConnector>()?;
    #[cfg(feature = "ucx")]
    m.add_class::<UcxConnector>()?;
    let _ = m;
    Ok(())
}
