//! `proxystore_rs.Connector`: any connector of the Rust registry behind
//! Python ProxyStore's connector protocol.
//!
//! Every blocking call runs with the GIL released. A connector remembers
//! the process that built it; a call from a forked child raises
//! `ForkError` (its threads and sockets did not survive the fork), except
//! for the kinds in [`FORK_SAFE`].

use std::collections::BTreeMap;
use std::sync::Arc;

use proxystore::{registry, Connector, ConnectorConfig, Error};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyTuple, PyType};

use crate::errors::{self, ForkError};
use crate::{buffer, keys};

/// Kinds that hold no thread, socket or lock, so a forked child may keep
/// using the parent's connector (a file connector is a directory).
pub(crate) const FORK_SAFE: &[&str] = &["file", "shm"];

/// A connector of any kind compiled into this build, built from options.
///
/// `Connector(kind, **options)` passes the options (as text) to the Rust
/// `ConnectorConfig` of `kind`; `config()` returns `kind` and the options
/// the connector reports, so `Connector(**c.config())` rebuilds it in any
/// process. The named classes (`FileConnector`, ...) fix the kind.
#[pyclass(module = "proxystore_rs", name = "Connector", subclass, frozen)]
pub struct PyConnector {
    /// `None` only while dropping in a forked child (see `Drop`).
    inner: Option<Arc<dyn Connector>>,
    /// Python class name, for messages (`FileConnector`).
    class: &'static str,
    /// A named class: its `config()` leaves `kind` out.
    named: bool,
    /// The process that built the connector.
    pid: u32,
}

impl Drop for PyConnector {
    fn drop(&mut self) {
        // In a forked child the parent's threads are gone: dropping could
        // join one that no longer exists. Leak instead; the child's memory
        // goes when it exits.
        if std::process::id() != self.pid {
            if let Some(inner) = self.inner.take() {
                std::mem::forget(inner);
            }
        }
    }
}

impl PyConnector {
    /// Builds a connector of `kind` from Python option values.
    pub(crate) fn build(
        py: Python<'_>,
        class: &'static str,
        named: bool,
        kind: &str,
        options: BTreeMap<String, String>,
    ) -> PyResult<Self> {
        proxystore::register_connectors();
        let mut config = ConnectorConfig::new(kind);
        if let Some(d) = registry::descriptor(kind) {
            for (name, value) in d.defaults {
                config = config.with(*name, value);
            }
        }
        config.options.extend(options);
        let what = format!("{class}({kind})");
        // Building may bind a server or connect: without the GIL.
        let inner = py
            .detach(|| proxystore::connector_from_config(&config))
            .map_err(|e| errors::to_py(&what, e))?;
        Ok(PyConnector {
            inner: Some(Arc::from(inner)),
            class,
            named,
            pid: std::process::id(),
        })
    }

    /// The connector, if this is the process that built it (or its kind
    /// survives fork).
    fn live(&self, op: &str) -> PyResult<Arc<dyn Connector>> {
        let inner = self.inner.as_ref().ok_or_else(|| {
            errors::ProxyStoreError::new_err(format!("{}.{op}: connector dropped", self.class))
        })?;
        let now = std::process::id();
        if now != self.pid && !FORK_SAFE.contains(&inner.kind()) {
            return Err(ForkError::new_err(format!(
                "{}.{op}: this {} connector was built in process {} and is used in process {now}, \
                 a fork() child, where its threads and sockets do not exist; build a new one in \
                 the child (Store.from_config(store.config()) or cls(**connector.config())) or \
                 start workers with multiprocessing's 'spawn' method",
                self.class,
                inner.kind(),
                self.pid
            )));
        }
        Ok(Arc::clone(inner))
    }

    fn err(&self, op: &str, e: Error) -> PyErr {
        errors::to_py(&format!("{}.{op}", self.class), e)
    }
}

#[pymethods]
impl PyConnector {
    #[new]
    #[pyo3(signature = (kind, **options))]
    fn new(py: Python<'_>, kind: &str, options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Self::build(py, "Connector", false, kind, options_from(options)?)
    }

    /// The Rust connector kind (`file`, `shm`, `zmq`, `redis`, ...).
    #[getter]
    fn kind(&self) -> PyResult<String> {
        Ok(self.live("kind")?.kind().to_string())
    }

    /// Stores a bytes-like object; returns its `RustKey`.
    fn put<'py>(&self, py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.live("put")?;
        let data = buffer::bytes_from_py(obj)?;
        let key = py.detach(|| c.put(data)).map_err(|e| self.err("put", e))?;
        keys::to_py(py, &key)
    }

    /// The object under `key` as a read-only `memoryview` (no copy), or
    /// `None` if there is none.
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let c = self.live("get")?;
        let key = keys::from_py(&format!("{}.get", self.class), key)?;
        let data = py.detach(|| c.get(&key)).map_err(|e| self.err("get", e))?;
        data.map(|d| buffer::memoryview_of(py, d)).transpose()
    }

    /// Whether an object exists under `key`.
    fn exists(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let c = self.live("exists")?;
        let key = keys::from_py(&format!("{}.exists", self.class), key)?;
        py.detach(|| c.exists(&key))
            .map_err(|e| self.err("exists", e))
    }

    /// Removes the object under `key`; a missing key is not an error.
    fn evict(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = self.live("evict")?;
        let key = keys::from_py(&format!("{}.evict", self.class), key)?;
        py.detach(|| c.evict(&key))
            .map_err(|e| self.err("evict", e))
    }

    /// Stores several bytes-like objects; returns their keys, in order.
    fn put_batch<'py>(
        &self,
        py: Python<'py>,
        objs: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let c = self.live("put_batch")?;
        let data = objs
            .try_iter()?
            .map(|o| buffer::bytes_from_py(&o?))
            .collect::<PyResult<Vec<_>>>()?;
        let keys = py
            .detach(|| c.put_batch(data))
            .map_err(|e| self.err("put_batch", e))?;
        let out = keys
            .iter()
            .map(|k| keys::to_py(py, k))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, out)
    }

    /// The objects under `keys`, in order (`None` where there is none).
    fn get_batch<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let c = self.live("get_batch")?;
        let what = format!("{}.get_batch", self.class);
        let keys = keys
            .try_iter()?
            .map(|k| keys::from_py(&what, &k?))
            .collect::<PyResult<Vec<_>>>()?;
        let values = py
            .detach(|| c.get_batch(&keys))
            .map_err(|e| self.err("get_batch", e))?;
        let out = values
            .into_iter()
            .map(|v| match v {
                Some(d) => buffer::memoryview_of(py, d),
                None => Ok(py.None().into_bound(py)),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, out)
    }

    /// A key under which `set` will store an object later (`obj` is
    /// ignored: keys do not depend on the data).
    #[pyo3(signature = (obj = None))]
    fn new_key<'py>(
        &self,
        py: Python<'py>,
        obj: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = obj;
        let c = self.live("new_key")?;
        let key = py
            .detach(|| deferrable(c.as_ref(), "new_key")?.new_key())
            .map_err(|e| self.err("new_key", e))?;
        keys::to_py(py, &key)
    }

    /// Stores `obj` under a key from `new_key`.
    fn set(&self, py: Python<'_>, key: &Bound<'_, PyAny>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = self.live("set")?;
        let key = keys::from_py(&format!("{}.set", self.class), key)?;
        let data = buffer::bytes_from_py(obj)?;
        py.detach(|| deferrable(c.as_ref(), "set")?.set(&key, data))
            .map_err(|e| self.err("set", e))
    }

    /// The options that rebuild this connector: `cls(**config())` (with
    /// `kind` for the generic class).
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let config = self.live("config")?.config();
        let out = PyDict::new(py);
        if !self.named {
            out.set_item("kind", &config.kind)?;
        }
        for (name, value) in &config.options {
            out.set_item(name, value)?;
        }
        Ok(out)
    }

    /// `cls(**config)`, the way Python ProxyStore rebuilds connectors.
    #[classmethod]
    fn from_config<'py>(
        cls: &Bound<'py, PyType>,
        config: &Bound<'py, PyDict>,
    ) -> PyResult<Bound<'py, PyAny>> {
        cls.call((), Some(config))
    }

    /// Releases the connector (a zmq or ucx data server stops serving).
    /// `clear=True` (keyword or first argument, as Python ProxyStore's
    /// `FileConnector.close` takes it and its `Store.close` forwards it)
    /// also deletes a `file` or `shm` connector's directory with every
    /// object in it; other kinds accept it and delete nothing. Without it
    /// nothing is deleted (a shared directory such as the default `shm`
    /// one may hold other processes' objects). Closing twice is not an
    /// error.
    #[pyo3(signature = (*args, **kwargs))]
    fn close(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let clear = match kwargs.map(|k| k.get_item("clear")).transpose()?.flatten() {
            Some(v) => v.is_truthy()?,
            None => match args.len() {
                0 => false,
                _ => args.get_item(0)?.is_truthy()?,
            },
        };
        let c = self.live("close")?;
        py.detach(|| c.close()).map_err(|e| self.err("close", e))?;
        if clear && matches!(c.kind(), "file" | "shm") {
            let config = c.config();
            if let Some(dir) = config.get("dir") {
                let dir = std::path::PathBuf::from(dir);
                match py.detach(|| std::fs::remove_dir_all(&dir)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        let what = format!("removing {}", dir.display());
                        return Err(self.err("close", Error::io(what, e)));
                    }
                }
            }
        }
        Ok(())
    }

    /// Pickles as `type(self).from_config(self.config())`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let rebuild = slf.get_type().getattr("from_config")?;
        let config = slf.get().config(py)?;
        Ok(PyTuple::new(py, [rebuild, PyTuple::new(py, [config])?.into_any()])?.into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let config = self.config(py)?;
        let args: Vec<String> = config
            .iter()
            .map(|(k, v)| Ok(format!("{k}={}", v.repr()?)))
            .collect::<PyResult<_>>()?;
        Ok(format!("{}({})", self.class, args.join(", ")))
    }
}

/// `c` as a deferrable connector, or `Unsupported` naming `op`.
fn deferrable<'a>(
    c: &'a dyn Connector,
    op: &'static str,
) -> proxystore::Result<&'a dyn proxystore::DeferrableConnector> {
    c.as_deferrable().ok_or_else(|| Error::Unsupported {
        connector: c.kind().to_string(),
        op,
    })
}

/// Keyword options as config text: `None` is left out, booleans are
/// `true`/`false`, paths and numbers their `str()`.
pub(crate) fn options_from(
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(options) = options else {
        return Ok(out);
    };
    for (name, value) in options.iter() {
        let name: String = name.extract()?;
        if name == "kind" {
            return Err(PyTypeError::new_err(
                "'kind' is fixed by the connector class; use proxystore_rs.Connector(kind, ...) to choose it",
            ));
        }
        if let Some(text) = option_text(&value)? {
            out.insert(name, text);
        }
    }
    Ok(out)
}

/// One option value as config text (`None` for Python `None`).
pub(crate) fn option_text(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Some(b.is_true().to_string()));
    }
    // os.fspath for path-like objects; str() for everything else.
    let text = match value.py().import("os")?.call_method1("fspath", (value,)) {
        Ok(path) => path.str()?,
        Err(_) => value.str()?,
    };
    Ok(Some(text.to_cow()?.into_owned()))
}
