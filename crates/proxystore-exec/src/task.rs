//! Tasks and their arguments: a named function, its arguments as a tuple,
//! and how each argument and the result is staged (moved by value or put
//! as a proxy) by a [`ProxyPolicy`].

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use proxystore_core::{Error, Key, Result, Store};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::policy::{ProxyPolicy, ValueInfo};

/// A value a task takes or returns: it can be encoded, put and sent.
pub trait TaskValue: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> TaskValue for T {}

/// A named task: the name finds the function in a worker process (see
/// [`TaskRegistry`](crate::TaskRegistry)), so the same task runs in
/// threads or in other processes unchanged. Arguments are one tuple.
///
/// ```
/// use proxystore_exec::Task;
/// static SUM: Task<(Vec<f64>,), f64> = Task::new("sum", |(v,)| v.iter().sum());
/// ```
pub struct Task<A, R> {
    name: &'static str,
    body: fn(A) -> R,
}

impl<A, R> Task<A, R> {
    /// A task named `name` running `body`.
    pub const fn new(name: &'static str, body: fn(A) -> R) -> Self {
        Task { name, body }
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its function.
    pub fn body(&self) -> fn(A) -> R {
        self.body
    }
}

impl<A, R> Clone for Task<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, R> Copy for Task<A, R> {}

impl<A, R> std::fmt::Debug for Task<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Task({})", self.name)
    }
}

/// Counters of a [`StoreExecutor`](crate::StoreExecutor), shared with the
/// jobs it starts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) tasks: AtomicU64,
    pub(crate) values_by_value: AtomicU64,
    pub(crate) bytes_by_value: AtomicU64,
    pub(crate) values_by_proxy: AtomicU64,
    pub(crate) bytes_by_proxy: AtomicU64,
    pub(crate) puts: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A value staged for a task in this process: moved, or put and proxied.
#[derive(Debug)]
pub enum Staged<T> {
    /// Passed as it is (a move).
    Value(T),
    /// Put in the store under this key; fetched where the task runs.
    Proxy(Key),
}

impl<T: TaskValue> Staged<T> {
    /// The value, fetched and decoded through `store` if it was proxied.
    pub fn resolve(self, store: &Store) -> Result<T> {
        match self {
            Staged::Value(v) => Ok(v),
            Staged::Proxy(key) => fetch(store, &key),
        }
    }
}

/// Gets and decodes `key`; a missing object is [`Error::NotFound`].
fn fetch<T: TaskValue>(store: &Store, key: &Key) -> Result<T> {
    store.get(key)?.ok_or_else(|| Error::NotFound {
        store: store.name().to_owned(),
        key: key.to_string(),
    })
}

/// A value staged for a task in another process: its encoded bytes inside
/// the task message, or the key it was put under (in the store the message
/// names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Wired {
    /// The value encoded with the store's codec.
    Value(Bytes),
    /// The value is in the store under this key.
    Proxy(Key),
}

impl Wired {
    /// The value, decoded with `store`'s codec or fetched.
    pub fn resolve<T: TaskValue>(self, store: &Store) -> Result<T> {
        match self {
            Wired::Value(b) => store.decode(b),
            Wired::Proxy(key) => fetch(store, &key),
        }
    }
}

/// Applies a policy to the values of one task, putting the proxied ones
/// and remembering their keys (evicted when the task is done).
pub struct Stager<'a> {
    pub(crate) store: &'a Store,
    pub(crate) policy: &'a ProxyPolicy,
    pub(crate) task: &'a str,
    pub(crate) counters: &'a Counters,
    pub(crate) owned: Vec<Key>,
}

impl<'a> Stager<'a> {
    /// A stager for one task's values.
    pub(crate) fn new(
        store: &'a Store,
        policy: &'a ProxyPolicy,
        task: &'a str,
        counters: &'a Counters,
    ) -> Self {
        Stager {
            store,
            policy,
            task,
            counters,
            owned: Vec::new(),
        }
    }

    /// Decides one value; `Ok((value, None))` to pass it by value, else the
    /// key of the put and the encoded bytes' length.
    fn decide<T: TaskValue>(
        &mut self,
        value: T,
        position: Option<usize>,
        encode_anyway: bool,
    ) -> Result<std::result::Result<(T, Option<Bytes>), Key>> {
        let type_name = std::any::type_name::<T>();
        let always = matches!(self.policy, ProxyPolicy::Always);
        let encoded = if encode_anyway || always || self.policy.needs_size() {
            Some(self.store.codec().encode(&value)?)
        } else {
            None
        };
        let info = ValueInfo {
            task: self.task,
            position,
            type_name,
            size: encoded.as_ref().map(Bytes::len),
        };
        if !self.policy.should_proxy(&info) {
            Counters::add(&self.counters.values_by_value, 1);
            if let Some(b) = &encoded {
                Counters::add(&self.counters.bytes_by_value, b.len() as u64);
            }
            return Ok(Ok((value, encoded)));
        }
        let data = match encoded {
            Some(b) => b,
            None => self.store.codec().encode(&value)?,
        };
        let len = data.len() as u64;
        let key = self.store.put_bytes(data)?;
        Counters::add(&self.counters.puts, 1);
        Counters::add(&self.counters.values_by_proxy, 1);
        Counters::add(&self.counters.bytes_by_proxy, len);
        self.owned.push(key.clone());
        Ok(Err(key))
    }

    /// Stages one value for a task in this process.
    pub fn stage<T: TaskValue>(&mut self, value: T, position: Option<usize>) -> Result<Staged<T>> {
        Ok(match self.decide(value, position, false)? {
            Ok((v, _)) => Staged::Value(v),
            Err(key) => Staged::Proxy(key),
        })
    }

    /// Stages one value for a task in another process.
    pub fn wire<T: TaskValue>(&mut self, value: T, position: Option<usize>) -> Result<Wired> {
        Ok(match self.decide(value, position, true)? {
            Ok((_, Some(bytes))) => Wired::Value(bytes),
            Ok((v, None)) => Wired::Value(self.store.codec().encode(&v)?),
            Err(key) => Wired::Proxy(key),
        })
    }

    /// The keys this stager put.
    pub(crate) fn take_owned(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.owned)
    }
}

/// A task's arguments: a tuple of one to six [`TaskValue`]s, each staged
/// on its own (so one large array goes as a proxy while a small parameter
/// beside it goes by value).
pub trait TaskArgs: Sized + Send + 'static {
    /// The arguments staged for a task in this process.
    type Staged: Send + 'static;
    /// How many arguments.
    const COUNT: usize;
    /// Stages every argument for a task in this process.
    fn stage(self, stager: &mut Stager<'_>) -> Result<Self::Staged>;
    /// The arguments back, proxied ones fetched through `store`.
    fn resolve(staged: Self::Staged, store: &Store) -> Result<Self>;
    /// Stages every argument for a task in another process.
    fn wire(self, stager: &mut Stager<'_>) -> Result<Vec<Wired>>;
    /// The arguments back from a task message.
    fn from_wire(wired: Vec<Wired>, store: &Store) -> Result<Self>;
}

macro_rules! tuple_args {
    ($n:literal; $($T:ident $i:tt),+) => {
        impl<$($T: TaskValue),+> TaskArgs for ($($T,)+) {
            type Staged = ($(Staged<$T>,)+);
            const COUNT: usize = $n;

            fn stage(self, stager: &mut Stager<'_>) -> Result<Self::Staged> {
                Ok(($(stager.stage(self.$i, Some($i))?,)+))
            }

            fn resolve(staged: Self::Staged, store: &Store) -> Result<Self> {
                Ok(($(staged.$i.resolve(store)?,)+))
            }

            fn wire(self, stager: &mut Stager<'_>) -> Result<Vec<Wired>> {
                Ok(vec![$(stager.wire(self.$i, Some($i))?),+])
            }

            fn from_wire(wired: Vec<Wired>, store: &Store) -> Result<Self> {
                if wired.len() != $n {
                    return Err(Error::Config(format!(
                        "a task message carries {} arguments where the task takes {}",
                        wired.len(),
                        $n
                    )));
                }
                let mut it = wired.into_iter();
                Ok(($(
                    it.next()
                        .ok_or(Error::Internal { what: "argument count checked above" })?
                        .resolve::<$T>(store)?,
                )+))
            }
        }
    };
}

tuple_args!(1; A 0);
tuple_args!(2; A 0, B 1);
tuple_args!(3; A 0, B 1, C 2);
tuple_args!(4; A 0, B 1, C 2, D 3);
tuple_args!(5; A 0, B 1, C 2, D 3, E 4);
tuple_args!(6; A 0, B 1, C 2, D 3, E 4, F 5);

/// The error of a task whose body panicked, with the panic's message.
pub(crate) fn task_panicked(name: &str, panic: &(dyn std::any::Any + Send)) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    Error::TaskFailed {
        task: name.to_owned(),
        reason: format!("panicked: {message}"),
    }
}
