//! `StoreExecutor`: wraps an executor so that task arguments and results
//! the policy picks travel as proxies, with their objects evicted when no
//! longer needed.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proxystore_core::{Error, Key, Result, Store};

use crate::executor::Executor;
use crate::handle::{Done, Slot, TaskHandle};
use crate::policy::ProxyPolicy;
use crate::process::{ProcessPool, Reply, TaskMessage};
use crate::task::{task_panicked, Counters, Staged, Stager, Task, TaskArgs, TaskValue, Wired};

/// What a [`StoreExecutor`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorMetrics {
    /// Tasks submitted.
    pub tasks: u64,
    /// Tasks that failed (panicked, or their staging failed where they ran).
    pub failed: u64,
    /// Arguments and results passed by value.
    pub values_by_value: u64,
    /// Their encoded bytes, where known: values are encoded only when the
    /// policy needs the size or the value crosses a process boundary (in
    /// one process a by-value argument is a move).
    pub bytes_by_value: u64,
    /// Arguments and results passed as proxies.
    pub values_by_proxy: u64,
    /// Their encoded bytes (what was put).
    pub bytes_by_proxy: u64,
    /// Objects put in the store.
    pub puts: u64,
    /// Argument objects evicted after their task (result objects are
    /// evicted by the caller's [`TaskOutput`](crate::TaskOutput)).
    pub evictions: u64,
}

enum Backend {
    Here(Arc<dyn Executor>),
    Processes(ProcessPool),
}

/// Runs tasks on an executor, passing the arguments and results its
/// policy picks as proxies (Python ProxyStore's `StoreExecutor`).
///
/// Ownership is automatic: an argument put for a task is evicted when the
/// task finishes (whether it succeeded or not), and a proxied result comes
/// back as an [`OwnedProxy`](proxystore_core::OwnedProxy) the caller holds.
///
/// In one process a by-value argument is moved, never encoded: the
/// in-process adapters exist so the same code runs unchanged when tasks
/// move to worker processes ([`StoreExecutor::with_processes`]), and what
/// they add over the bare executor is overhead.
pub struct StoreExecutor {
    store: Store,
    backend: Backend,
    policy: ProxyPolicy,
    result_policy: ProxyPolicy,
    counters: Arc<Counters>,
}

/// Evicts the argument objects of one task when dropped: after the task,
/// or at once if it never starts.
struct ArgumentObjects {
    store: Store,
    keys: Vec<Key>,
    counters: Arc<Counters>,
}

impl Drop for ArgumentObjects {
    fn drop(&mut self) {
        for key in self.keys.drain(..) {
            match self.store.evict(&key) {
                Ok(()) => Counters::add(&self.counters.evictions, 1),
                Err(e) => tracing::warn!(
                    "evicting task argument {key} from store '{}' failed: {e}",
                    self.store.name()
                ),
            }
        }
    }
}

impl ArgumentObjects {
    /// Ends a task: its argument objects are evicted, then the caller is
    /// given the outcome (so it never sees a result while they remain).
    fn finish<R>(self, outcome: Result<Done<R>>, slot: &Slot<R>) {
        let (store, counters) = (self.store.clone(), Arc::clone(&self.counters));
        drop(self);
        if outcome.is_err() {
            Counters::add(&counters.failed, 1);
        }
        slot.complete(outcome, &store);
    }
}

/// Stages a task's result by the result policy (where the task ran).
fn stage_result<R: TaskValue>(
    store: &Store,
    policy: &ProxyPolicy,
    task: &str,
    counters: &Counters,
    result: R,
) -> Result<Done<R>> {
    Ok(
        match Stager::new(store, policy, task, counters).stage(result, None)? {
            Staged::Value(v) => Done::Value(v),
            Staged::Proxy(key) => Done::Proxy(key),
        },
    )
}

impl StoreExecutor {
    /// Runs tasks on `executor` in this process; every value goes by value
    /// until a policy is set.
    pub fn new(store: Store, executor: impl Executor) -> Self {
        Self::with_backend(store, Backend::Here(Arc::new(executor)))
    }

    /// Runs tasks in the worker processes of `pool`: arguments and results
    /// go inside the task messages or, as the policy picks, as proxies.
    pub fn with_processes(store: Store, pool: ProcessPool) -> Self {
        Self::with_backend(store, Backend::Processes(pool))
    }

    fn with_backend(store: Store, backend: Backend) -> Self {
        StoreExecutor {
            store,
            backend,
            policy: ProxyPolicy::Never,
            result_policy: ProxyPolicy::Never,
            counters: Arc::default(),
        }
    }

    /// Sets the policy for arguments and results.
    pub fn policy(mut self, policy: ProxyPolicy) -> Self {
        self.result_policy = policy.clone();
        self.policy = policy;
        self
    }

    /// Sets the policy for results alone (after [`policy`](Self::policy)).
    pub fn result_policy(mut self, policy: ProxyPolicy) -> Self {
        self.result_policy = policy;
        self
    }

    /// The store proxies go through.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counters since this executor was built.
    pub fn metrics(&self) -> ExecutorMetrics {
        let c = &self.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ExecutorMetrics {
            tasks: get(&c.tasks),
            failed: get(&c.failed),
            values_by_value: get(&c.values_by_value),
            bytes_by_value: get(&c.bytes_by_value),
            values_by_proxy: get(&c.values_by_proxy),
            bytes_by_proxy: get(&c.bytes_by_proxy),
            puts: get(&c.puts),
            evictions: get(&c.evictions),
        }
    }

    fn stager<'a>(&'a self, task: &'a str) -> Stager<'a> {
        Stager::new(&self.store, &self.policy, task, &self.counters)
    }

    fn argument_objects(&self, keys: Vec<Key>) -> ArgumentObjects {
        ArgumentObjects {
            store: self.store.clone(),
            keys,
            counters: Arc::clone(&self.counters),
        }
    }

    /// Submits `task` with `args`, in this process or a worker process.
    pub fn submit<A: TaskArgs, R: TaskValue>(
        &self,
        task: &Task<A, R>,
        args: A,
    ) -> Result<TaskHandle<R>> {
        match &self.backend {
            Backend::Here(executor) => self.run_here(executor, task.name(), task.body(), args),
            Backend::Processes(pool) => self.run_remote(pool, task.name(), args),
        }
    }

    /// Submits a closure (in-process executors only: a closure cannot be
    /// named in another process; register a [`Task`] for that).
    pub fn submit_fn<A, R, F>(&self, name: &'static str, body: F, args: A) -> Result<TaskHandle<R>>
    where
        A: TaskArgs,
        R: TaskValue,
        F: FnOnce(A) -> R + Send + 'static,
    {
        match &self.backend {
            Backend::Here(executor) => self.run_here(executor, name, body, args),
            Backend::Processes(_) => Err(Error::Unsupported {
                connector: "process-pool executor".to_owned(),
                op: "closures (submit a registered Task)",
            }),
        }
    }

    /// Stages `args`, evicting what was put if a later argument fails.
    fn stage<A: TaskArgs>(&self, name: &str, args: A) -> Result<(A::Staged, ArgumentObjects)> {
        let mut stager = self.stager(name);
        let staged = args.stage(&mut stager);
        let objects = self.argument_objects(stager.take_owned());
        Ok((staged?, objects))
    }

    fn run_here<A, R, F>(
        &self,
        executor: &Arc<dyn Executor>,
        name: &'static str,
        body: F,
        args: A,
    ) -> Result<TaskHandle<R>>
    where
        A: TaskArgs,
        R: TaskValue,
        F: FnOnce(A) -> R + Send + 'static,
    {
        let (staged, objects) = self.stage(name, args)?;
        let slot = Slot::new();
        let (store, counters, theirs) = (
            self.store.clone(),
            Arc::clone(&self.counters),
            Arc::clone(&slot),
        );
        let result_policy = self.result_policy.clone();
        let job = move || {
            let outcome = A::resolve(staged, &store).and_then(|args| {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(args)))
                    .map_err(|panic| task_panicked(name, &*panic))?;
                stage_result(&store, &result_policy, name, &counters, result)
            });
            objects.finish(outcome, &theirs);
        };
        Counters::add(&self.counters.tasks, 1);
        executor.spawn(Box::new(job))?;
        Ok(TaskHandle::new(slot, self.store.clone(), name))
    }

    fn run_remote<A: TaskArgs, R: TaskValue>(
        &self,
        pool: &ProcessPool,
        name: &'static str,
        args: A,
    ) -> Result<TaskHandle<R>> {
        let mut stager = self.stager(name);
        let wired = args.wire(&mut stager);
        let objects = self.argument_objects(stager.take_owned());
        let message = TaskMessage {
            task: name.to_owned(),
            store: self.store.config(),
            result_policy: self.result_policy.clone(),
            args: wired?,
        };
        let slot = Slot::<R>::new();
        let (counters, theirs) = (Arc::clone(&self.counters), Arc::clone(&slot));
        Counters::add(&self.counters.tasks, 1);
        pool.dispatch(
            &message,
            Box::new(move |reply: Result<Reply>| {
                // The worker staged the result; count it here, where the
                // metrics are.
                let outcome = reply.map(|(wired, len)| match wired {
                    Wired::Value(bytes) => {
                        Counters::add(&counters.values_by_value, 1);
                        Counters::add(&counters.bytes_by_value, len);
                        Done::Bytes(bytes)
                    }
                    Wired::Proxy(key) => {
                        Counters::add(&counters.values_by_proxy, 1);
                        Counters::add(&counters.bytes_by_proxy, len);
                        Counters::add(&counters.puts, 1);
                        Done::Proxy(key)
                    }
                });
                objects.finish(outcome, &theirs);
            }),
        )?;
        Ok(TaskHandle::new(slot, self.store.clone(), name))
    }

    /// Submits an async task body to a [`TokioExecutor`](crate::TokioExecutor)
    /// (spawned as a tokio task; proxied arguments are fetched and the
    /// result put on tokio's blocking pool). Arguments are staged on the
    /// calling thread. Other executors: [`Error::Unsupported`].
    #[cfg(feature = "tokio")]
    pub fn submit_async<A, R, F, Fut>(
        &self,
        name: &'static str,
        body: F,
        args: A,
    ) -> Result<TaskHandle<R>>
    where
        A: TaskArgs,
        R: TaskValue,
        F: FnOnce(A) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = R> + Send + 'static,
    {
        let handle = match &self.backend {
            Backend::Here(e) => e
                .as_any()
                .downcast_ref::<crate::TokioExecutor>()
                .map(|t| t.handle().clone()),
            Backend::Processes(_) => None,
        }
        .ok_or_else(|| Error::Unsupported {
            connector: "this executor".to_owned(),
            op: "async task bodies (use a TokioExecutor)",
        })?;
        let (staged, objects) = self.stage(name, args)?;
        let slot = Slot::new();
        let (store, counters, theirs) = (
            self.store.clone(),
            Arc::clone(&self.counters),
            Arc::clone(&slot),
        );
        let result_policy = self.result_policy.clone();
        let runtime = handle.clone();
        Counters::add(&self.counters.tasks, 1);
        drop(handle.spawn(async move {
            let outcome = async {
                let s = store.clone();
                let args =
                    join(name, runtime.spawn_blocking(move || A::resolve(staged, &s))).await??;
                let result = join(name, runtime.spawn(body(args))).await?;
                join(
                    name,
                    runtime.spawn_blocking(move || {
                        stage_result(&store, &result_policy, name, &counters, result)
                    }),
                )
                .await?
            }
            .await;
            objects.finish(outcome, &theirs);
        }));
        Ok(TaskHandle::new(slot, self.store.clone(), name))
    }
}

/// A tokio task's output, its panic as the task's error.
#[cfg(feature = "tokio")]
async fn join<T>(name: &str, task: tokio::task::JoinHandle<T>) -> Result<T> {
    task.await.map_err(|e| match e.try_into_panic() {
        Ok(panic) => task_panicked(name, &*panic),
        Err(e) => Error::TaskFailed {
            task: name.to_owned(),
            reason: e.to_string(),
        },
    })
}

impl std::fmt::Debug for StoreExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreExecutor")
            .field("store", &self.store.name())
            .field("policy", &self.policy)
            .field("result_policy", &self.result_policy)
            .field(
                "backend",
                &match self.backend {
                    Backend::Here(_) => "in-process",
                    Backend::Processes(_) => "worker processes",
                },
            )
            .finish()
    }
}
