//! Run tasks with their large arguments and results passed as proxies.
//!
//! [`StoreExecutor`] wraps an [`Executor`] (std threads
//! [`ThreadPoolExecutor`], rayon's pool `RayonExecutor` with feature
//! `rayon`, a tokio runtime `TokioExecutor` with feature `tokio`) or a
//! [`ProcessPool`] of worker processes. A [`ProxyPolicy`] decides which
//! arguments and results go as proxies; their objects are evicted when the
//! task is done (arguments) or when the caller drops the result's
//! [`TaskOutput`] (results).
//!
//! ```
//! use proxystore_core::{LocalConnector, Store};
//! use proxystore_exec::{ProxyPolicy, StoreExecutor, Task, ThreadPoolExecutor};
//! use std::time::Duration;
//!
//! static SUM: Task<(Vec<f64>, f64), f64> = Task::new("sum", |(v, scale)| scale * v.iter().sum::<f64>());
//!
//! # fn main() -> proxystore_core::Result<()> {
//! let store = Store::new("exec-doc", LocalConnector::new());
//! let exec = StoreExecutor::new(store, ThreadPoolExecutor::new(2)?)
//!     .policy(ProxyPolicy::MinSize(1024));
//! // The vector (8 KiB encoded) goes as a proxy, the scale by value.
//! let handle = exec.submit(&SUM, (vec![1.0; 1000], 2.0))?;
//! assert_eq!(handle.wait(Duration::from_secs(10))?.into_value()?, 2000.0);
//! assert_eq!(exec.metrics().values_by_proxy, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The control channel ([`channel`]) carries task messages between
//! processes as length-prefixed frames; [`farm`] is a Dask-shaped task
//! farm over it (client, relaying scheduler, worker), what `proxystore
//! bench --scenario farm` measures.

pub mod channel;
mod executor;
pub mod farm;
mod handle;
mod policy;
mod process;
mod store_executor;
mod task;

pub use channel::{FrameListener, FrameStream, MAX_FRAME};
#[cfg(feature = "rayon")]
pub use executor::RayonExecutor;
#[cfg(feature = "tokio")]
pub use executor::TokioExecutor;
pub use executor::{Executor, Job, ThreadPoolExecutor};
pub use handle::{TaskHandle, TaskOutput};
pub use policy::{ProxyPolicy, ShouldProxy, ValueInfo};
pub use process::{serve_if_worker, ProcessPool, TaskRegistry, WORKER_ENV, WORKER_START_TIMEOUT};
pub use store_executor::{ExecutorMetrics, StoreExecutor};
pub use task::{Staged, Stager, Task, TaskArgs, TaskValue, Wired};
