//! File connector: objects are files in a directory.
//!
//! One connector serves a node-local disk, NFS, Lustre and `/dev/shm` (the
//! one-node shared-memory path, connector kind `shm`). Any process that can
//! see the directory can read the objects, so they outlive the producer.
//!
//! - Writes are atomic: data goes to a temporary file in the target
//!   directory, then `rename(2)` publishes it, so a reader sees a whole
//!   object or none. Files are never modified after publication.
//! - Keys fan out over 256 subdirectories (first two hex digits of the id)
//!   so no directory grows huge on parallel file systems. Option `layout =
//!   python` uses Python ProxyStore's flat `<uuid>` + `<uuid>.ready`
//!   instead ([`FileLayout::Python`]).
//! - Objects of at least `mmap_threshold` bytes are memory-mapped into
//!   [`Bytes`] (no copy; on `/dev/shm` the mapping is the page cache itself).
//! - On Lustre, an optional stripe layout is set on the directory once, and
//!   new objects inherit it.
//! - On `shm`, option `arena_bytes` puts objects into one pre-faulted arena
//!   per producing process instead (see docs/connectors.md): a put is a
//!   plain copy, a get a pinned view, and objects too large for the arena
//!   (or puts into a full one) fall back to files. Arena objects live as
//!   long as the producing process, not after it.

mod arena;
mod lustre;
mod map_cache;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use proxystore_core::registry::{
    self, BenchEnv, BenchSetup, CliOption, ConnectorDescriptor, FlagUse, ScratchDir,
};
use proxystore_core::{
    Capabilities, ClosedFlag, Connector, ConnectorConfig, DeferrableConnector, Error, Key,
    ObjectId, Result,
};

pub use lustre::{is_lustre, LustreStripe};

/// Objects this size or larger are memory-mapped on `get` by default.
pub const DEFAULT_MMAP_THRESHOLD: usize = 1 << 20;

/// Arena size of the `shm-arena` connector name (and its benchmark): holds
/// four 64 MiB objects with a 64-byte header each (a quarter of the arena is
/// the largest object it takes; larger ones go to files).
pub const DEFAULT_ARENA_BYTES: usize = 384 << 20;

/// Bytes of mappings an `shm` connector keeps of objects it has read, so a
/// second read of an object reuses its mapping ([`FileConfig::map_cache_bytes`]).
pub const DEFAULT_SHM_MAP_CACHE_BYTES: usize = 256 << 20;

/// Default directory of the `shm` connector.
pub fn default_shm_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/dev/shm/proxystore-{uid}"))
}

/// The `file` kind: a directory (`--dir`, required).
pub static FILE: ConnectorDescriptor = ConnectorDescriptor::new(
    "file",
    Some("file"),
    "a directory: local disk, NFS or Lustre",
    FileConnector::from_config_boxed,
)
.with_cli_options(&[CliOption::new("dir", "dir", FlagUse::Required).example("DIR")])
.with_bench(|env| match &env.dir {
    Some(dir) => Ok(BenchSetup::new(FileConnector::new(dir)?)),
    None => bench_in_scratch("file", &std::env::temp_dir()),
});

/// The `shm` kind: the file connector on `/dev/shm` (`--dir` optional).
pub static SHM: ConnectorDescriptor = ConnectorDescriptor::new(
    "shm",
    Some("file"),
    "/dev/shm (one node)",
    FileConnector::from_config_boxed,
)
.with_cli_options(&[CliOption::new("dir", "dir", FlagUse::Optional)])
.with_bench(|_: &BenchEnv| bench_in_scratch("shm", Path::new("/dev/shm")));

/// `shm-arena`: the `shm` connector with its arena on ([`DEFAULT_ARENA_BYTES`]
/// unless option `arena_bytes` says otherwise). A name for the command line
/// and `proxystore bench`; its connectors are kind `shm` and write configs of
/// kind `shm` with `arena_bytes`, so any process rebuilds them as `shm`.
pub static SHM_ARENA: ConnectorDescriptor = ConnectorDescriptor::new(
    "shm-arena",
    Some("file"),
    "/dev/shm (one node), a pre-faulted arena per producing process",
    FileConnector::from_config_boxed,
)
.with_cli_options(&[CliOption::new("dir", "dir", FlagUse::Optional)])
.with_bench(|_: &BenchEnv| {
    let scratch = ScratchDir::new_in(Path::new("/dev/shm"))?;
    let connector = FileConnector::with_config(FileConfig {
        dir: scratch.path().into(),
        arena_bytes: DEFAULT_ARENA_BYTES,
        ..FileConfig::shm()
    })?;
    Ok(BenchSetup::new(connector)
        .keep_alive(scratch)
        .with_label("shm-arena"))
});

/// The kinds this crate implements.
pub static DESCRIPTORS: &[&ConnectorDescriptor] = &[&FILE, &SHM, &SHM_ARENA];

/// A connector of `kind` on a new directory under `parent`, removed after.
fn bench_in_scratch(kind: &str, parent: &Path) -> Result<BenchSetup> {
    let scratch = ScratchDir::new_in(parent)?;
    let config = match kind {
        "shm" => FileConfig {
            dir: scratch.path().into(),
            ..FileConfig::shm()
        },
        _ => FileConfig::new(scratch.path()),
    };
    let connector = FileConnector::with_config(config)?;
    Ok(BenchSetup::new(connector).keep_alive(scratch))
}

/// Registers the `file`, `shm` and `shm-arena` kinds so connectors can be rebuilt from
/// configs in this process. Called by every constructor; idempotent.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| DESCRIPTORS.iter().copied().for_each(registry::register));
}

/// How objects are laid out in the directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileLayout {
    /// `<dir>/<first two hex digits>/<32 hex digits>`, 256 subdirectories
    /// so no directory grows huge on parallel file systems (the default).
    #[default]
    Fanout,
    /// Python ProxyStore's `FileConnector` layout (option `layout =
    /// python`): `<dir>/<hyphenated UUID>`, then an empty
    /// `<dir>/<UUID>.ready` marker once the data is in place; objects count
    /// only with their marker. Each side reads what the other wrote.
    Python,
}

/// Settings of a [`FileConnector`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// Directory holding the objects (created if missing).
    pub dir: PathBuf,
    /// Kind reported in configs: `file` or `shm`.
    pub kind: String,
    /// Objects of at least this many bytes are memory-mapped on `get`.
    pub mmap_threshold: usize,
    /// Lustre stripe layout to set on the directory (ignored elsewhere).
    pub stripe: Option<LustreStripe>,
    /// `shm` only: bytes of this process's shared-memory arena that puts
    /// go to (0: off, every object is a file). See docs/connectors.md.
    pub arena_bytes: usize,
    /// Where objects go in the directory.
    pub layout: FileLayout,
    /// Bytes of mappings of read objects kept for the next read of the same
    /// object (least recently used out; 0: none). Default
    /// [`DEFAULT_SHM_MAP_CACHE_BYTES`] on `shm`, 0 on `file`. See
    /// docs/connectors.md.
    pub map_cache_bytes: usize,
}

impl FileConfig {
    /// Settings for a `file` connector on `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileConfig {
            dir: dir.into(),
            kind: "file".into(),
            mmap_threshold: DEFAULT_MMAP_THRESHOLD,
            stripe: None,
            arena_bytes: 0,
            layout: FileLayout::Fanout,
            map_cache_bytes: 0,
        }
    }

    /// Settings for an `shm` connector on [`default_shm_dir`].
    pub fn shm() -> Self {
        FileConfig {
            kind: "shm".into(),
            map_cache_bytes: DEFAULT_SHM_MAP_CACHE_BYTES,
            ..FileConfig::new(default_shm_dir())
        }
    }

    /// Parses a connector config of kind `file`, `shm` or `shm-arena` (an
    /// `shm` config whose `arena_bytes` defaults to [`DEFAULT_ARENA_BYTES`]).
    pub fn from_connector_config(config: &ConnectorConfig) -> Result<Self> {
        let mut out = match config.kind.as_str() {
            "file" => FileConfig::new(config.require("dir")?),
            "shm" | "shm-arena" => match config.get("dir") {
                Some(dir) => FileConfig {
                    dir: dir.into(),
                    ..FileConfig::shm()
                },
                None => FileConfig::shm(),
            },
            other => {
                return Err(Error::Config(format!(
                    "file connector cannot be built from kind '{other}'"
                )))
            }
        };
        if let Some(t) = config.parse("mmap_threshold")? {
            out.mmap_threshold = t;
        }
        if config.kind == "shm-arena" {
            out.arena_bytes = DEFAULT_ARENA_BYTES;
        }
        if let Some(bytes) = config.parse("arena_bytes")? {
            out.arena_bytes = bytes;
        }
        if let Some(bytes) = config.parse("map_cache_bytes")? {
            out.map_cache_bytes = bytes;
        }
        out.layout = match config.get("layout") {
            None | Some("fanout") => FileLayout::Fanout,
            Some("python") => FileLayout::Python,
            Some(other) => {
                return Err(Error::Config(format!(
                    "{} connector option layout must be fanout or python, not '{other}'",
                    config.kind
                )))
            }
        };
        let count: Option<u32> = config.parse("stripe_count")?;
        let size: Option<u64> = config.parse("stripe_size")?;
        out.stripe = match (count, size) {
            (None, None) => None,
            (Some(count), Some(size)) => Some(LustreStripe { count, size }),
            _ => {
                return Err(Error::Config(
                    "file connector needs both stripe_count and stripe_size, or neither".into(),
                ))
            }
        };
        Ok(out)
    }

    /// The connector config these settings serialize to.
    pub fn to_connector_config(&self) -> ConnectorConfig {
        let mut c = ConnectorConfig::new(self.kind.clone())
            .with("dir", self.dir.display())
            .with("mmap_threshold", self.mmap_threshold);
        if let Some(s) = self.stripe {
            c = c.with("stripe_count", s.count).with("stripe_size", s.size);
        }
        if self.arena_bytes > 0 {
            c = c.with("arena_bytes", self.arena_bytes);
        }
        // Written only where it is not the kind's default, so configs of
        // connectors with default settings keep their keys.
        let default_map_cache = match self.kind.as_str() {
            "file" => 0,
            _ => DEFAULT_SHM_MAP_CACHE_BYTES,
        };
        if self.map_cache_bytes != default_map_cache {
            c = c.with("map_cache_bytes", self.map_cache_bytes);
        }
        if self.layout == FileLayout::Python {
            c = c.with("layout", "python");
        }
        c
    }
}

/// Stores objects as files in a directory. See the crate docs.
#[derive(Debug)]
pub struct FileConnector {
    config: FileConfig,
    closed: ClosedFlag,
    arenas: arena::Arenas,
    maps: map_cache::MapCache,
}

impl FileConnector {
    /// A `file` connector on `dir`, created if it does not exist.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::with_config(FileConfig::new(dir))
    }

    /// An `shm` connector on [`default_shm_dir`].
    pub fn shm() -> Result<Self> {
        Self::with_config(FileConfig::shm())
    }

    /// A connector with explicit settings.
    pub fn with_config(config: FileConfig) -> Result<Self> {
        register();
        if config.kind != "file" && config.kind != "shm" {
            return Err(Error::Config(format!(
                "file connector kind must be file or shm, not '{}'",
                config.kind
            )));
        }
        if config.arena_bytes > 0 && config.kind != "shm" {
            return Err(Error::Config(format!(
                "arena_bytes is an option of the shm connector, not of '{}'",
                config.kind
            )));
        }
        if config.arena_bytes > 0 && config.layout == FileLayout::Python {
            return Err(Error::Config(
                "arena_bytes and layout = python exclude each other (Python ProxyStore reads files only)".into(),
            ));
        }
        if config.arena_bytes > 0 && config.arena_bytes < arena::MIN_ARENA_BYTES {
            return Err(Error::Config(format!(
                "arena_bytes {} is below the smallest arena, {} bytes",
                config.arena_bytes,
                arena::MIN_ARENA_BYTES
            )));
        }
        if config.dir.exists() && !config.dir.is_dir() {
            return Err(Error::Config(format!(
                "{} is not a directory",
                config.dir.display()
            )));
        }
        fs::create_dir_all(&config.dir).map_err(|e| {
            Error::io(
                format!("creating file connector directory {}", config.dir.display()),
                e,
            )
        })?;
        if let Some(stripe) = config.stripe {
            lustre::apply_stripe(&config.dir, stripe)?;
        }
        Ok(FileConnector {
            arenas: arena::Arenas::new(&config.dir, config.arena_bytes),
            maps: map_cache::MapCache::new(config.map_cache_bytes),
            config,
            closed: ClosedFlag::new(),
        })
    }

    fn from_config_boxed(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
        Ok(Box::new(Self::with_config(
            FileConfig::from_connector_config(config)?,
        )?))
    }

    /// The directory objects are stored in.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// The file that holds (or would hold) the object `id`.
    pub fn object_path(&self, id: ObjectId) -> PathBuf {
        match self.config.layout {
            FileLayout::Fanout => {
                let hex = id.to_string();
                self.config.dir.join(&hex[..2]).join(hex)
            }
            FileLayout::Python => self.config.dir.join(id.to_uuid_string()),
        }
    }

    /// Python layout: the marker that says object `id` is complete.
    fn ready_path(&self, id: ObjectId) -> PathBuf {
        self.config
            .dir
            .join(format!("{}.ready", id.to_uuid_string()))
    }

    /// Whether object `id` counts as stored: always in the fan-out layout
    /// (its file appears whole, by rename), only with its marker in
    /// Python's.
    fn is_published(&self, id: ObjectId) -> Result<bool> {
        if self.config.layout == FileLayout::Fanout {
            return Ok(true);
        }
        let ready = self.ready_path(id);
        match fs::metadata(&ready) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("checking {}", ready.display()), e)),
        }
    }

    /// Writes object `id` (atomically), then, in Python's layout, its
    /// marker; a marker that cannot be written takes the data back out.
    fn publish(&self, id: ObjectId, parts: &[&[u8]]) -> Result<()> {
        let path = self.object_path(id);
        self.write_atomic(&path, parts)?;
        if self.config.layout == FileLayout::Python {
            let ready = self.ready_path(id);
            if let Err(e) = File::create(&ready) {
                let _ = fs::remove_file(&path);
                return Err(Error::io(format!("creating {}", ready.display()), e));
            }
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        self.closed.check(&self.config.kind)
    }

    /// Writes the concatenation of `parts` to a temporary file beside
    /// `path` and renames it into place; on any failure the temporary file
    /// is removed.
    fn write_atomic(&self, path: &Path, parts: &[&[u8]]) -> Result<()> {
        let parent = path.parent().unwrap_or(&self.config.dir);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = parent.join(format!(
            ".{name}.{}.{:08x}.tmp",
            std::process::id(),
            fastrand_u32()
        ));
        let mut file = match create_new(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                create_new(&tmp)
            }
            other => other,
        }
        .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let written = parts
            .iter()
            .try_for_each(|part| file.write_all(part))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&tmp);
            let len: usize = parts.iter().map(|p| p.len()).sum();
            return Err(Error::io(
                format!("writing {len} bytes to {}", path.display()),
                e,
            ));
        }
        Ok(())
    }

    /// Reads object `id` from `path`: mapped (or the mapping kept from an
    /// earlier read of the same file) from `mmap_threshold` bytes, read
    /// into memory below.
    fn read(&self, id: ObjectId, path: &Path) -> Result<Option<Bytes>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.maps.remove(id);
                return Ok(None);
            }
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading size of {}", path.display()), e))?;
        let len = meta.len();
        let len = usize::try_from(len).map_err(|_| Error::TooLarge {
            what: "object file",
            size: len,
            limit: usize::MAX as u64,
        })?;
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        if len >= self.config.mmap_threshold {
            let ident = map_cache::FileIdent::of(&meta);
            if let Some(mapped) = self.maps.get(id, ident) {
                return Ok(Some(mapped));
            }
            // SAFETY: object files are written once under a temporary name
            // and renamed into place; nothing in proxystore modifies or
            // truncates a published file (evict unlinks it, which leaves
            // existing mappings valid). Only a process outside proxystore
            // truncating the file could invalidate the mapping.
            let map = unsafe { memmap2::MmapOptions::new().len(len).populate().map(&file) }
                .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
            let mapped = Bytes::from_owner(map);
            self.maps.insert(id, ident, &mapped);
            return Ok(Some(mapped));
        }
        let mut buf = Vec::with_capacity(len);
        // Bounded by the length: no extra read() to find the end of file.
        io::Read::take(&mut file, len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Ok(Some(Bytes::from(buf)))
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

fn fastrand_u32() -> u32 {
    // Distinguishes temporary files of concurrent writers of one key.
    (ObjectId::random().as_u128() & 0xffff_ffff) as u32
}

impl Connector for FileConnector {
    fn kind(&self) -> &str {
        &self.config.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none()
            .with_deferrable(true)
            .with_one_sided_get(true)
            // Arena objects live only as long as the producing process.
            .with_survives_producer_exit(self.config.arena_bytes == 0)
            .with_cross_process(true)
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        self.put_parts(&[&data])
    }

    // Each part is copied once, straight into the arena or the file.
    fn put_parts(&self, parts: &[&[u8]]) -> Result<Key> {
        self.check_open()?;
        if let Some(key) = self.arenas.put(parts)? {
            return Ok(key);
        }
        let key = Key::random();
        self.publish(key.id(), parts)?;
        Ok(key)
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.check_open()?;
        if let Some(loc) = arena::Location::of(key)? {
            return self.arenas.get(key, &loc);
        }
        if !self.is_published(key.id())? {
            return Ok(None);
        }
        self.read(key.id(), &self.object_path(key.id()))
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.check_open()?;
        if let Some(loc) = arena::Location::of(key)? {
            return self.arenas.exists(key, &loc);
        }
        if !self.is_published(key.id())? {
            return Ok(false);
        }
        let path = self.object_path(key.id());
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("checking {}", path.display()), e)),
        }
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.check_open()?;
        if let Some(loc) = arena::Location::of(key)? {
            return self.arenas.evict(key, &loc);
        }
        self.maps.remove(key.id());
        // The marker first: no reader finds an object whose data is going.
        if self.config.layout == FileLayout::Python {
            remove_if_present(&self.ready_path(key.id()))?;
        }
        remove_if_present(&self.object_path(key.id()))
    }

    fn config(&self) -> ConnectorConfig {
        self.config.to_connector_config()
    }

    fn close(&self) -> Result<()> {
        self.closed.close();
        self.maps.clear();
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl DeferrableConnector for FileConnector {
    fn new_key(&self) -> Result<Key> {
        self.closed.new_key(&self.config.kind)
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.check_open()?;
        if key.location().is_some() {
            return Err(Error::InvalidKey {
                text: key.to_string().chars().take(200).collect(),
                reason: "set takes a key from new_key (no location)",
            });
        }
        self.publish(key.id(), &[&data])
    }
}
