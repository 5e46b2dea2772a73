//! The process-wide registry of connector kinds, and the one description
//! each connector crate gives of itself.
//!
//! A connector crate declares a [`ConnectorDescriptor`] per kind (a
//! `const`): its factory, Cargo feature, what it needs at run time, how
//! command-line flags become its [`ConnectorConfig`], how `proxystore serve`
//! and `proxystore bench` run it, and its line in `proxystore info`. The
//! crate [`register`]s its descriptors when one of its connectors is
//! constructed; the facade's `register_connectors()` registers every
//! compiled-in one. Everything else (the CLI, proxies resolving in another
//! process) reads the registry: nothing else names connector kinds.
//!
//! The factories themselves live in `crate::connector` (what a store needs
//! to rebuild a connector); this module adds the descriptors. It starts
//! with the built-in `local` kind's.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use bytes::Bytes;

use crate::connector::{register_connector, Connector, ConnectorConfig, ConnectorFactory};
use crate::error::{Error, Result};
use crate::key::ObjectId;
use crate::local::LocalConnector;
use crate::multi::MultiConnector;

/// Starts a standalone data server from a configuration (`proxystore
/// serve`).
pub type ServeFn = fn(&ConnectorConfig) -> Result<ServerHandle>;

/// Sets a connector up for `proxystore bench`.
pub type BenchFn = fn(&BenchEnv) -> Result<BenchSetup>;

/// What a connector found at run time, for `proxystore info` (a library
/// version, whether a server is on `PATH`).
pub type StatusFn = fn() -> String;

/// When a command-line flag must be given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagUse {
    /// May be left out.
    Optional,
    /// Every command on this connector needs it.
    Required,
    /// Only `proxystore serve` needs it.
    RequiredToServe,
    /// May be given to the commands that reach a server (put, get, ...);
    /// `proxystore serve` has no use for it and refuses it.
    NotToServe,
}

/// One command-line flag a connector reads, and the config option it sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CliOption {
    /// The flag without dashes (`dir`, `address`, `url`, `timeout-ms`).
    pub flag: &'static str,
    /// The [`ConnectorConfig`] option it sets.
    pub key: &'static str,
    /// When it must be given.
    pub usage: FlagUse,
    /// What a value looks like, for error messages (`DIR`,
    /// `redis://HOST:PORT`).
    pub example: &'static str,
}

impl CliOption {
    /// Flag `--flag` sets option `key`.
    pub const fn new(flag: &'static str, key: &'static str, usage: FlagUse) -> Self {
        CliOption {
            flag,
            key,
            usage,
            example: "VALUE",
        }
    }

    /// Sets the example value shown when the flag is missing.
    pub const fn example(mut self, example: &'static str) -> Self {
        self.example = example;
        self
    }
}

/// Everything the rest of the workspace needs to know about one connector
/// kind, declared once by the crate implementing it.
///
/// Built with [`ConnectorDescriptor::new`] and the `with_*` methods, all
/// `const`, so a descriptor is a `const` item of its crate.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ConnectorDescriptor {
    /// The kind, as in configs and on the command line (`zmq`).
    pub kind: &'static str,
    /// The Cargo feature of the facade and CLI that compiles it in; `None`
    /// for connectors that are always there.
    pub feature: Option<&'static str>,
    /// What it needs at run time (`libzmq`, `a Redis or KeyDB server`).
    pub needs: &'static str,
    /// Builds a connector from a config of this kind.
    pub factory: ConnectorFactory,
    /// Where its keys are valid, if that excludes a shell command's own
    /// process (`one process` for `local`, `one MPI job` for `mpi`): the
    /// CLI's one-shot object commands refuse it, naming this.
    pub confined_to: Option<&'static str>,
    /// Config options set before the command-line flags are read.
    pub defaults: &'static [(&'static str, &'static str)],
    /// The command-line flags it reads.
    pub cli_options: &'static [CliOption],
    /// Its standalone data server, if it has one.
    pub serve: Option<ServeFn>,
    /// How `proxystore bench` sets it up, if it can be benchmarked.
    pub bench: Option<BenchFn>,
    /// What it found at run time, for `proxystore info`.
    pub status: Option<StatusFn>,
    /// Run once by a command-line tool before it uses any connector, to
    /// keep the transport library's own output off a terminal whose stderr
    /// is one error line (ucx: UCX's log, unless `UCX_LOG_LEVEL` is set).
    /// Libraries leave it alone.
    pub quiet_for_cli: Option<fn()>,
}

impl ConnectorDescriptor {
    /// A descriptor of `kind`, built by `factory`, with no flags, server,
    /// bench setup or status.
    pub const fn new(
        kind: &'static str,
        feature: Option<&'static str>,
        needs: &'static str,
        factory: ConnectorFactory,
    ) -> Self {
        ConnectorDescriptor {
            kind,
            feature,
            needs,
            factory,
            confined_to: None,
            defaults: &[],
            cli_options: &[],
            serve: None,
            bench: None,
            status: None,
            quiet_for_cli: None,
        }
    }

    /// Marks its objects as living only in the putting process.
    pub const fn one_process(self) -> Self {
        self.confined_to("one process")
    }

    /// Marks its keys as valid only within `scope` (see
    /// [`ConnectorDescriptor::confined_to`]).
    pub const fn confined_to(mut self, scope: &'static str) -> Self {
        self.confined_to = Some(scope);
        self
    }

    /// Sets the config options set before the flags are read.
    pub const fn with_defaults(
        mut self,
        defaults: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.defaults = defaults;
        self
    }

    /// Sets the command-line flags it reads.
    pub const fn with_cli_options(mut self, options: &'static [CliOption]) -> Self {
        self.cli_options = options;
        self
    }

    /// Sets its standalone data server.
    pub const fn with_serve(mut self, serve: ServeFn) -> Self {
        self.serve = Some(serve);
        self
    }

    /// Sets its `proxystore bench` setup.
    pub const fn with_bench(mut self, bench: BenchFn) -> Self {
        self.bench = Some(bench);
        self
    }

    /// Sets its run-time status for `proxystore info`.
    pub const fn with_status(mut self, status: StatusFn) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets what a command-line tool runs first (see
    /// [`ConnectorDescriptor::quiet_for_cli`]).
    pub const fn with_quiet_for_cli(mut self, quiet: fn()) -> Self {
        self.quiet_for_cli = Some(quiet);
        self
    }

    /// A config of this kind from flag values: the defaults, then each
    /// flag of [`cli_options`](Self::cli_options) that `flag` gives a value
    /// for. A missing required flag is an [`Error::Config`] naming it; see
    /// [`missing_flag`](Self::missing_flag) to check before building.
    pub fn config_from_flags(
        &self,
        flag: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnectorConfig> {
        let mut config = ConnectorConfig::new(self.kind);
        for (key, value) in self.defaults {
            config = config.with(*key, value);
        }
        for option in self.cli_options {
            match flag(option.flag) {
                Some(value) => config = config.with(option.key, value),
                None if option.usage == FlagUse::Required => {
                    return Err(self.flag_error(option));
                }
                None => {}
            }
        }
        Ok(config)
    }

    /// The first flag `serving` (or any command, if `serving` is false)
    /// needs that `flag` gives no value for.
    pub fn missing_flag(
        &self,
        serving: bool,
        flag: &dyn Fn(&str) -> Option<String>,
    ) -> Option<&CliOption> {
        self.cli_options.iter().find(|o| {
            let needed = match o.usage {
                FlagUse::Optional | FlagUse::NotToServe => false,
                FlagUse::Required => true,
                FlagUse::RequiredToServe => serving,
            };
            needed && flag(o.flag).is_none()
        })
    }

    /// The first flag given (per `flag`) that `proxystore serve` refuses
    /// ([`FlagUse::NotToServe`]).
    pub fn flag_not_to_serve(&self, flag: &dyn Fn(&str) -> Option<String>) -> Option<&CliOption> {
        self.cli_options
            .iter()
            .find(|o| o.usage == FlagUse::NotToServe && flag(o.flag).is_some())
    }

    fn flag_error(&self, option: &CliOption) -> Error {
        Error::Config(format!(
            "--connector {} needs --{} {}",
            self.kind, option.flag, option.example
        ))
    }
}

/// A standalone data server started by a [`ServeFn`]; it answers until this
/// handle is dropped.
pub struct ServerHandle {
    address: String,
    _server: Box<dyn Any + Send>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("address", &self.address)
            .finish()
    }
}

impl ServerHandle {
    /// A handle on `server` (stopped when dropped), reachable at `address`.
    pub fn new(address: impl Into<String>, server: impl Any + Send) -> Self {
        ServerHandle {
            address: address.into(),
            _server: Box::new(server),
        }
    }

    /// Where clients reach it.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// What `proxystore bench` hands a [`BenchFn`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BenchEnv {
    /// The directory the user named (`--dir`), for connectors that keep
    /// objects in one.
    pub dir: Option<PathBuf>,
    /// The shared secret network connectors that need one (`ucx`, `ofi`)
    /// set up their connectors with, so other processes the caller starts
    /// can reach them (`proxystore load --processes`); `None`: a random
    /// one for this run.
    pub secret: Option<String>,
    /// Threads for the data server's transport, where the connector has a
    /// setting for it (zmq's `server_threads`); `None`: its default.
    pub server_threads: Option<usize>,
}

impl BenchEnv {
    /// An environment with the user's directory, if any.
    pub fn new(dir: Option<PathBuf>) -> Self {
        BenchEnv {
            dir,
            secret: None,
            server_threads: None,
        }
    }

    /// The same, with data servers given `threads` transport threads.
    pub fn with_server_threads(mut self, threads: usize) -> Self {
        self.server_threads = Some(threads);
        self
    }

    /// The same, with connectors set up to share `secret`.
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// The secret to set up with: the caller's, else a random one.
    pub fn secret_or_random(&self) -> String {
        self.secret
            .clone()
            .unwrap_or_else(|| format!("{:032x}", crate::ObjectId::random().as_u128()))
    }
}

/// A connector set up for `proxystore bench`, with the raw transport it is
/// measured against and whatever must outlive it.
#[non_exhaustive]
pub struct BenchSetup {
    /// Puts go here.
    pub writer: Box<dyn Connector>,
    /// Gets go here, if not to the writer: a second connector that reaches
    /// the first over the transport, as another process would.
    pub reader: Option<Box<dyn Connector>>,
    /// The transport's own loops, timed beside the connector.
    pub baselines: Vec<Box<dyn RawBaseline>>,
    /// Servers and directories the connectors use; dropped after them.
    pub keep_alive: Vec<Box<dyn Any>>,
    /// Set where this process only helps another one run the benchmark
    /// (an MPI rank other than 0): `proxystore bench` runs it, reports
    /// nothing, and exits when it returns.
    pub helper: Option<Box<dyn FnOnce() -> Result<()>>>,
    /// The name its records get in the report, if not the kind (`daos-mock`
    /// for the DAOS connector on its mock, so a mock figure is never read
    /// as the real transport's).
    pub label: Option<String>,
}

impl fmt::Debug for BenchSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BenchSetup")
            .field("writer", &self.writer)
            .field("reader", &self.reader)
            .field(
                "baselines",
                &self.baselines.iter().map(|b| b.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl BenchSetup {
    /// Puts and gets both go to `writer`; no baseline.
    pub fn new(writer: impl Connector + 'static) -> Self {
        BenchSetup {
            writer: Box::new(writer),
            reader: None,
            baselines: Vec::new(),
            keep_alive: Vec::new(),
            helper: None,
            label: None,
        }
    }

    /// A process that only helps another run the benchmark: `help` serves
    /// what the measuring process reads and returns when the run is over
    /// (see [`BenchSetup::helper`]).
    pub fn helping(help: impl FnOnce() -> Result<()> + 'static) -> Self {
        let mut setup = BenchSetup::new(LocalConnector::new());
        setup.helper = Some(Box::new(help));
        setup
    }

    /// Gets go to `reader`.
    pub fn with_reader(mut self, reader: impl Connector + 'static) -> Self {
        self.reader = Some(Box::new(reader));
        self
    }

    /// Adds a raw baseline.
    pub fn with_baseline(mut self, baseline: impl RawBaseline + 'static) -> Self {
        self.baselines.push(Box::new(baseline));
        self
    }

    /// Names its records `label` instead of the kind.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Keeps `thing` alive as long as the connectors (dropped after them).
    pub fn keep_alive(mut self, thing: impl Any) -> Self {
        self.keep_alive.push(Box::new(thing));
        self
    }
}

/// A transport's plain request/reply of a payload, with no store, key
/// layout or pooling: the bar a connector is held to in `proxystore bench`.
pub trait RawBaseline {
    /// Its name in the report (`zmq-raw`).
    fn name(&self) -> &str;

    /// The ops it measures (`put`, `get`); both by default.
    fn ops(&self) -> &'static [&'static str] {
        &["put", "get"]
    }

    /// Starts a session that serves `payload` to gets.
    fn start(&self, payload: &Bytes) -> Result<Box<dyn RawSession>>;
}

/// A [`RawBaseline`] named `name` whose sessions `start` opens (see
/// [`raw_baseline`]).
pub struct RawFn<S> {
    name: &'static str,
    ops: &'static [&'static str],
    start: fn(&Bytes) -> Result<S>,
}

/// The raw baseline `name` of a session type: `start` opens a session
/// serving the payload (a transport's bare loop, such as `ofi-raw`).
pub const fn raw_baseline<S>(name: &'static str, start: fn(&Bytes) -> Result<S>) -> RawFn<S> {
    RawFn {
        name,
        ops: &["put", "get"],
        start,
    }
}

impl<S> RawFn<S> {
    /// Measures only `ops` (a one-sided read loop has no put).
    pub const fn only(mut self, ops: &'static [&'static str]) -> Self {
        self.ops = ops;
        self
    }
}

impl<S: RawSession + 'static> RawBaseline for RawFn<S> {
    fn name(&self) -> &str {
        self.name
    }

    fn ops(&self) -> &'static [&'static str] {
        self.ops
    }

    fn start(&self, payload: &Bytes) -> Result<Box<dyn RawSession>> {
        Ok(Box::new((self.start)(payload)?))
    }
}

/// One run of a [`RawBaseline`]; `proxystore bench` times its calls.
pub trait RawSession {
    /// Sends `data` to the server.
    fn put(&mut self, data: &Bytes) -> Result<()>;

    /// Fetches the payload back.
    fn get(&mut self) -> Result<Option<Bytes>>;
}

/// A new directory under a parent, removed with everything in it when
/// dropped: where a benchmark keeps objects when the user named none.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/proxystore-bench-<random>`.
    pub fn new_in(parent: &Path) -> Result<Self> {
        let path = parent.join(format!(
            "proxystore-bench-{:016x}",
            ObjectId::random().as_u128() as u64
        ));
        std::fs::create_dir(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(ScratchDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The descriptor of the built-in `multi` connector: routes puts to
/// children by policy (option `children`, JSON; see [`crate::multi`]).
pub const MULTI: ConnectorDescriptor = ConnectorDescriptor::new(
    crate::multi::KIND,
    None,
    "the connectors it routes to",
    MultiConnector::from_config_boxed,
);

/// The descriptor of the built-in `local` connector.
pub const LOCAL: ConnectorDescriptor = ConnectorDescriptor::new(
    "local",
    None,
    "nothing: objects live in the putting process",
    LocalConnector::from_config_boxed,
)
.one_process()
.with_bench(|_| Ok(BenchSetup::new(LocalConnector::new())));

fn descriptors() -> &'static RwLock<HashMap<&'static str, &'static ConnectorDescriptor>> {
    static DESCRIPTORS: OnceLock<RwLock<HashMap<&'static str, &'static ConnectorDescriptor>>> =
        OnceLock::new();
    DESCRIPTORS
        .get_or_init(|| RwLock::new(HashMap::from([(LOCAL.kind, &LOCAL), (MULTI.kind, &MULTI)])))
}

/// Registers (or replaces) the connector `descriptor` describes: its
/// factory, so configs of its kind rebuild in this process, and the
/// descriptor itself, so the CLI can use the kind.
pub fn register(descriptor: &'static ConnectorDescriptor) {
    register_connector(descriptor.kind, descriptor.factory);
    let mut map = descriptors().write().unwrap_or_else(|e| e.into_inner());
    map.insert(descriptor.kind, descriptor);
}

/// The descriptor registered for `kind`, if any (`local` always is).
pub fn descriptor(kind: &str) -> Option<&'static ConnectorDescriptor> {
    let map = descriptors().read().unwrap_or_else(|e| e.into_inner());
    map.get(kind).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::connector_from_config;

    fn flags<'a>(given: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |f| {
            given
                .iter()
                .find(|(k, _)| *k == f)
                .map(|(_, v)| v.to_string())
        }
    }

    const OPTIONS: &[CliOption] = &[
        CliOption::new("dir", "dir", FlagUse::Required).example("DIR"),
        CliOption::new("address", "server", FlagUse::RequiredToServe),
    ];
    const TEST: ConnectorDescriptor =
        ConnectorDescriptor::new("test-kind", Some("test"), "nothing", |_| {
            Err(Error::Config("never built".into()))
        })
        .with_defaults(&[("address", "x://*")])
        .with_cli_options(OPTIONS);

    #[test]
    fn flags_become_options_after_the_defaults() {
        let config = TEST
            .config_from_flags(&flags(&[("dir", "/d"), ("address", "x://1")]))
            .unwrap();
        assert_eq!(config.kind, "test-kind");
        assert_eq!(config.get("dir"), Some("/d"));
        assert_eq!(config.get("server"), Some("x://1"));
        assert_eq!(config.get("address"), Some("x://*"));
    }

    #[test]
    fn a_missing_required_flag_is_named() {
        let err = TEST.config_from_flags(&flags(&[])).unwrap_err();
        assert!(err.to_string().contains("--dir DIR"), "{err}");
        let given = flags(&[("dir", "/d")]);
        assert_eq!(TEST.missing_flag(false, &given), None);
        assert_eq!(
            TEST.missing_flag(true, &given).map(|o| o.flag),
            Some("address")
        );
    }

    #[test]
    fn local_has_a_descriptor_from_the_start() {
        let d = descriptor("local").unwrap();
        assert!(d.confined_to == Some("one process") && d.feature.is_none());
        let c = LocalConnector::new();
        let key = c.put(Bytes::from_static(b"x")).unwrap();
        let rebuilt = connector_from_config(&c.config()).unwrap();
        assert_eq!(rebuilt.get(&key).unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn registering_a_descriptor_registers_its_factory() {
        static D: ConnectorDescriptor =
            ConnectorDescriptor::new("registry-test", None, "nothing", |_| {
                Ok(Box::new(LocalConnector::new()))
            });
        let unknown = connector_from_config(&ConnectorConfig::new("registry-test"));
        assert!(matches!(unknown, Err(Error::UnknownConnector { .. })));
        register(&D);
        assert_eq!(
            descriptor("registry-test").map(|d| d.kind),
            Some("registry-test")
        );
        assert!(connector_from_config(&ConnectorConfig::new("registry-test")).is_ok());
    }

    #[test]
    fn scratch_dirs_are_removed_when_dropped() {
        let scratch = ScratchDir::new_in(&std::env::temp_dir()).unwrap();
        let path = scratch.path().to_owned();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(scratch);
        assert!(!path.exists());
    }
}
