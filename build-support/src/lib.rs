//! Build-script support for proxystore-rs `-sys` crates: one rule for
//! finding a site library and generating its bindings.
//!
//! Discovery order (the first that applies wins):
//! 1. `<PREFIX>_DIR` (e.g. `UCX_DIR`): an install prefix with `include/` and
//!    `lib/` or `lib64/`. If it is set but wrong, that is an error: an
//!    explicit choice is never silently replaced by another library.
//! 2. pkg-config (what `module load` sets up on Cray/HPE systems).
//! 3. Well-known prefixes (`/usr`, `/usr/local`, `/opt/<lib>`, and globs
//!    such as `/opt/cray/libfabric/*`, newest first).
//!
//! A failure lists every attempt and why it failed, in one message.
//! Bindings come from bindgen with an allowlist; `static inline` API
//! functions (libfabric's whole data path) are wrapped by bindgen's
//! `wrap_static_fns` and compiled with `cc` into a small static library.
//! That library and its symbols are named after the crate's `links` value
//! (`<links>_static_fns`, `<fn>__<links>_static`), so any number of `-sys`
//! crates can wrap inline functions and link into one binary.
//!
//! Every `-sys` build script starts with [`docs_rs_bindings`]: under
//! `DOCS_RS` it copies the checked-in bindings and the script returns
//! without probing or linking anything.
//!
//! ```no_run
//! use proxystore_build_support::{docs_rs_bindings, generate_bindings, BindingsSpec, LibrarySpec};
//! # const SPEC: LibrarySpec<'static> = LibrarySpec { name: "", env_prefix: "", pkg_config: &[], header: "", libs: &[], prefixes: &[] };
//! let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
//! if docs_rs_bindings("src/bindings_pregenerated.rs".as_ref(), &out_dir).unwrap() {
//!     return; // documentation only: nothing is probed or linked
//! }
//! let found = SPEC.find().unwrap_or_else(|e| panic!("{e}"));
//! found.emit_cargo_metadata();
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// What to look for.
#[derive(Clone, Debug)]
pub struct LibrarySpec<'a> {
    /// Name for messages (`UCX`).
    pub name: &'a str,
    /// Env var prefix: `<prefix>_DIR` names an install prefix.
    pub env_prefix: &'a str,
    /// pkg-config package names to try, in order.
    pub pkg_config: &'a [&'a str],
    /// A header that must exist under an include directory.
    pub header: &'a str,
    /// Libraries to link, without `lib` and suffix.
    pub libs: &'a [&'a str],
    /// Install prefixes to try last; a trailing `/*` tries every entry of
    /// that directory, newest (highest sorting) first.
    pub prefixes: &'a [&'a str],
}

/// A library that was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Directories to pass to the C parser and compiler.
    pub include_dirs: Vec<PathBuf>,
    /// Directories to search when linking.
    pub lib_dirs: Vec<PathBuf>,
    /// Libraries to link.
    pub libs: Vec<String>,
    /// Version, when pkg-config knew it.
    pub version: Option<String>,
    /// How it was found, for the build log.
    pub how: String,
}

/// The library was not found; every attempt says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound {
    /// Library name.
    pub library: String,
    /// Env var that selects a prefix.
    pub env_var: String,
    /// One line per attempt.
    pub attempts: Vec<String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} not found. Tried:", self.library)?;
        for a in &self.attempts {
            writeln!(f, "  - {a}")?;
        }
        write!(
            f,
            "Set {} to its install prefix (the directory holding include/ and lib/).",
            self.env_var
        )
    }
}

impl std::error::Error for NotFound {}

impl LibrarySpec<'_> {
    /// The env var naming an install prefix (`UCX_DIR`).
    pub fn dir_var(&self) -> String {
        format!("{}_DIR", self.env_prefix)
    }

    /// Finds the library with this process's environment and pkg-config.
    pub fn find(&self) -> Result<Found, NotFound> {
        self.find_with(&|var| std::env::var(var).ok(), &|name| {
            probe_pkg_config(name)
        })
    }

    /// Finds the library with the given environment and pkg-config probe
    /// (tests inject both).
    pub fn find_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        pkg_config: &dyn Fn(&str) -> Result<Found, String>,
    ) -> Result<Found, NotFound> {
        let mut attempts = Vec::new();
        let not_found = |attempts| NotFound {
            library: self.name.to_string(),
            env_var: self.dir_var(),
            attempts,
        };
        // The target's multiarch dir, not the host's: a cross build must not
        // link the build machine's library. Without TARGET (not a build
        // script) host and target are the same machine.
        let multiarch = env("TARGET")
            .or_else(|| Some(format!("{}-unknown-linux-gnu", std::env::consts::ARCH)))
            .and_then(|t| multiarch_dir(&t));
        let multiarch = multiarch.as_deref();
        let var = self.dir_var();
        if let Some(dir) = env(&var).filter(|d| !d.is_empty()) {
            return match self.at_prefix(Path::new(&dir), multiarch) {
                Ok(mut found) => {
                    found.how = format!("{var}={dir}");
                    Ok(found)
                }
                Err(why) => {
                    attempts.push(format!("{var}={dir}: {why}"));
                    Err(not_found(attempts))
                }
            };
        }
        attempts.push(format!("{var}: not set"));
        for name in self.pkg_config {
            match pkg_config(name) {
                Ok(mut found) => {
                    if found.include_dirs.is_empty() {
                        // pkg-config omits system include dirs; the header
                        // must still be there.
                        found.include_dirs = vec![PathBuf::from("/usr/include")];
                    }
                    if found
                        .include_dirs
                        .iter()
                        .any(|d| d.join(self.header).is_file())
                    {
                        found.how = format!("pkg-config {name}");
                        return Ok(found);
                    }
                    attempts.push(format!(
                        "pkg-config {name}: found, but no {} under its include dirs",
                        self.header
                    ));
                }
                Err(why) => attempts.push(format!("pkg-config {name}: {why}")),
            }
        }
        for prefix in expand_prefixes(self.prefixes) {
            match self.at_prefix(&prefix, multiarch) {
                Ok(mut found) => {
                    found.how = format!("prefix {}", prefix.display());
                    return Ok(found);
                }
                Err(why) => attempts.push(format!("{}: {why}", prefix.display())),
            }
        }
        Err(not_found(attempts))
    }

    /// The library under an install prefix, if its header and first
    /// library are there.
    fn at_prefix(&self, prefix: &Path, multiarch: Option<&str>) -> Result<Found, String> {
        let include = prefix.join("include");
        if !include.join(self.header).is_file() {
            return Err(format!("no include/{}", self.header));
        }
        let first = self.libs.first().copied().unwrap_or_default();
        let mut dirs = vec!["lib64".to_string(), "lib".to_string()];
        dirs.extend(multiarch.map(|m| format!("lib/{m}")));
        let lib_dir = dirs
            .iter()
            .map(|d| prefix.join(d))
            .find(|d| {
                ["so", "a"]
                    .iter()
                    .any(|ext| d.join(format!("lib{first}.{ext}")).is_file())
            })
            .ok_or_else(|| {
                format!(
                    "no lib{first}.so or lib{first}.a in {}",
                    dirs.iter()
                        .map(|d| format!("{d}/"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        Ok(Found {
            include_dirs: vec![include],
            lib_dirs: vec![lib_dir],
            libs: self.libs.iter().map(|l| l.to_string()).collect(),
            version: None,
            how: String::new(),
        })
    }
}

/// The Debian/Ubuntu multiarch directory name for a Rust target triple
/// (`x86_64-unknown-linux-gnu` → `x86_64-linux-gnu`, so libraries live in
/// `/usr/lib/x86_64-linux-gnu`). `None` for non-Linux targets.
///
/// Build scripts run on the host; pass `TARGET` (not
/// `std::env::consts::ARCH`) so a cross build looks in the target's dir.
pub fn multiarch_dir(target: &str) -> Option<String> {
    let parts: Vec<&str> = target.split('-').collect();
    let linux = parts.iter().position(|p| *p == "linux")?;
    let arch = *parts.first()?;
    // Rust arch names that Debian spells differently.
    let arch = match arch {
        "i386" | "i486" | "i586" | "i686" => "i386",
        a if a.starts_with("riscv64") => "riscv64",
        a if a.starts_with("riscv32") => "riscv32",
        a if a.starts_with("armeb") => "armeb",
        a if a.starts_with("arm") || a.starts_with("thumb") => "arm",
        a => a,
    };
    // `linux` with no environment after it means glibc.
    let env = match parts[linux + 1..].join("-") {
        e if e.is_empty() => "gnu".to_string(),
        e => e,
    };
    Some(format!("{arch}-linux-{env}"))
}

fn probe_pkg_config(name: &str) -> Result<Found, String> {
    let lib = pkg_config::Config::new()
        .cargo_metadata(false)
        .env_metadata(false)
        .probe(name)
        .map_err(|e| {
            // pkg-config's message spans lines; the first says enough.
            e.to_string().lines().next().unwrap_or("failed").to_string()
        })?;
    Ok(Found {
        include_dirs: lib.include_paths,
        lib_dirs: lib.link_paths,
        libs: lib.libs,
        version: Some(lib.version),
        how: String::new(),
    })
}

/// Expands `dir/*` entries to the subdirectories of `dir`, newest first.
fn expand_prefixes(prefixes: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in prefixes {
        match p.strip_suffix("/*") {
            Some(parent) => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
                    .map(|rd| {
                        rd.filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| p.is_dir())
                            .collect()
                    })
                    .unwrap_or_default();
                found.sort();
                found.reverse();
                out.extend(found);
            }
            None => out.push(PathBuf::from(p)),
        }
    }
    out
}

impl Found {
    /// Prints the cargo directives that link the library, and the include
    /// directory for dependents (`DEP_<LINKS>_INCLUDE`).
    pub fn emit_cargo_metadata(&self) {
        for dir in &self.lib_dirs {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        for lib in &self.libs {
            println!("cargo:rustc-link-lib={lib}");
        }
        if let Some(inc) = self.include_dirs.first() {
            println!("cargo:include={}", inc.display());
        }
        // Visible to dependents as DEP_<LINKS>_FOUND_VIA, and in `-vv` logs.
        println!("cargo:found_via={}", self.how);
        if let Some(v) = &self.version {
            println!("cargo:version={v}");
        }
    }
}

/// Tells cargo to rerun the build script when the discovery inputs change.
pub fn rerun_if_env_changed(spec: &LibrarySpec<'_>) {
    for var in [
        spec.dir_var().as_str(),
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "LIBCLANG_PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

/// What bindgen should generate.
#[derive(Clone, Debug, Default)]
pub struct BindingsSpec<'a> {
    /// C source that includes the library's headers.
    pub wrapper: &'a str,
    /// Regexes of functions to keep.
    pub functions: &'a [&'a str],
    /// Regexes of types to keep.
    pub types: &'a [&'a str],
    /// Regexes of variables and constants to keep.
    pub vars: &'a [&'a str],
    /// Wrap `static inline` functions in real symbols (compiled with cc).
    pub wrap_static_fns: bool,
    /// The crate's `links` value (`fabric`). It names the wrapper library
    /// ([`static_fns_lib`]) and the wrapper symbols' suffix
    /// ([`static_fns_suffix`]), so two crates' wrappers never collide. Empty
    /// means `CARGO_MANIFEST_LINKS`, which cargo sets for a build script of
    /// a package with `links`. Only used with `wrap_static_fns`.
    pub links: &'a str,
}

/// The static library holding one crate's `static inline` wrappers:
/// `<links>_static_fns`. A fixed name would make two `-sys` crates'
/// `-l static=` lines pick the same archive.
pub fn static_fns_lib(links: &str) -> String {
    format!("{}_static_fns", c_ident(links))
}

/// The suffix bindgen appends to each wrapped function's symbol:
/// `__<links>_static`. Two crates wrapping the same inline helper (a shared
/// header) would otherwise both define `<fn>__extern`.
pub fn static_fns_suffix(links: &str) -> String {
    format!("__{}_static", c_ident(links))
}

/// `links` values may hold `-` or `.`; library and symbol names may not.
fn c_ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The cfg set on a crate built from checked-in bindings (under `DOCS_RS`),
/// where the library is not linked. [`docs_rs_bindings`] declares it in
/// every build, so `#[cfg(not(checked_in_bindings))]` is never flagged by
/// the `unexpected_cfgs` lint.
pub const CHECKED_IN_BINDINGS_CFG: &str = "checked_in_bindings";

/// The first call of every `-sys` build script. When `DOCS_RS` is set,
/// copies `checked_in` (bindings generated ahead of time and committed) to
/// `<out_dir>/bindings.rs`, sets the cfg [`CHECKED_IN_BINDINGS_CFG`] and
/// returns `Ok(true)`: the script must then return without probing or
/// linking anything (docs.rs has no site libraries). Otherwise returns
/// `Ok(false)` and the script goes on to [`LibrarySpec::find`].
///
/// `checked_in` is relative to the package root (a build script's working
/// directory). Checked-in bindings that wrap `static inline` functions must
/// be generated with the same `links` value, so their symbol names match.
pub fn docs_rs_bindings(checked_in: &Path, out_dir: &Path) -> Result<bool, String> {
    docs_rs_bindings_with(&|var| std::env::var(var).ok(), checked_in, out_dir)
}

/// [`docs_rs_bindings`] with an injected environment (tests).
pub fn docs_rs_bindings_with(
    env: &dyn Fn(&str) -> Option<String>,
    checked_in: &Path,
    out_dir: &Path,
) -> Result<bool, String> {
    println!("cargo::rustc-check-cfg=cfg({CHECKED_IN_BINDINGS_CFG})");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-changed={}", checked_in.display());
    if env("DOCS_RS").is_none() {
        return Ok(false);
    }
    let out = out_dir.join("bindings.rs");
    std::fs::copy(checked_in, &out).map_err(|e| {
        format!(
            "DOCS_RS is set: copying checked-in bindings {} to {}: {e}",
            checked_in.display(),
            out.display()
        )
    })?;
    println!("cargo:rustc-cfg={CHECKED_IN_BINDINGS_CFG}");
    Ok(true)
}

/// Runs bindgen for `spec` against the headers of `found`, writing
/// `<out_dir>/bindings.rs`; with `wrap_static_fns`, also compiles the
/// generated wrappers into `<out_dir>/lib<links>_static_fns.a` and prints
/// the cargo lines that link it.
pub fn generate_bindings(
    found: &Found,
    spec: &BindingsSpec<'_>,
    out_dir: &Path,
) -> Result<PathBuf, String> {
    let links = match spec.links {
        "" => std::env::var("CARGO_MANIFEST_LINKS").unwrap_or_default(),
        l => l.to_string(),
    };
    if spec.wrap_static_fns && links.is_empty() {
        return Err(
            "wrap_static_fns needs BindingsSpec::links (or a `links` key in \
                    Cargo.toml) to name the wrapper library"
                .into(),
        );
    }
    let wrapper_h = out_dir.join("wrapper.h");
    std::fs::write(&wrapper_h, spec.wrapper)
        .map_err(|e| format!("writing {}: {e}", wrapper_h.display()))?;
    let mut builder = bindgen::Builder::default()
        .header(wrapper_h.display().to_string())
        .layout_tests(false)
        .derive_default(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for dir in &found.include_dirs {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }
    for f in spec.functions {
        builder = builder.allowlist_function(f);
    }
    for t in spec.types {
        builder = builder.allowlist_type(t);
    }
    for v in spec.vars {
        builder = builder.allowlist_var(v);
    }
    let static_fns = out_dir.join("static_fns");
    if spec.wrap_static_fns {
        builder = builder
            .wrap_static_fns(true)
            .wrap_static_fns_suffix(static_fns_suffix(&links))
            .wrap_static_fns_path(&static_fns);
    }
    let bindings = builder
        .generate()
        .map_err(|e| format!("bindgen failed on {}: {e}", wrapper_h.display()))?;
    let out = out_dir.join("bindings.rs");
    bindings
        .write_to_file(&out)
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    if spec.wrap_static_fns {
        let c_file = static_fns.with_extension("c");
        let mut build = cc::Build::new();
        // Into out_dir itself, not $OUT_DIR: the caller chose where.
        build
            .file(&c_file)
            .include(out_dir)
            .out_dir(out_dir)
            .warnings(false);
        for dir in &found.include_dirs {
            build.include(dir);
        }
        // The generated file includes the wrapper by its path.
        build.flag_if_supported("-Wno-unused-parameter");
        build
            .try_compile(&static_fns_lib(&links))
            .map_err(|e| format!("compiling {}: {e}", c_file.display()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SPEC: LibrarySpec<'static> = LibrarySpec {
        name: "Fake",
        env_prefix: "FAKE",
        pkg_config: &["fake"],
        header: "fake/api.h",
        libs: &["fake", "fakeutil"],
        prefixes: &[],
    };

    fn install(prefix: &Path, lib_dir: &str) {
        std::fs::create_dir_all(prefix.join("include/fake")).unwrap();
        std::fs::write(prefix.join("include/fake/api.h"), "int fake(void);").unwrap();
        std::fs::create_dir_all(prefix.join(lib_dir)).unwrap();
        std::fs::write(prefix.join(lib_dir).join("libfake.so"), "").unwrap();
    }

    fn no_pkg(_: &str) -> Result<Found, String> {
        Err("package not found".into())
    }

    #[test]
    fn the_dir_variable_wins_and_finds_lib64() {
        let t = tempfile::tempdir().unwrap();
        install(t.path(), "lib64");
        let env: HashMap<&str, String> = [("FAKE_DIR", t.path().display().to_string())].into();
        let found = SPEC.find_with(&|v| env.get(v).cloned(), &no_pkg).unwrap();
        assert_eq!(found.lib_dirs, vec![t.path().join("lib64")]);
        assert_eq!(found.libs, vec!["fake", "fakeutil"]);
        assert!(found.how.starts_with("FAKE_DIR="));
    }

    #[test]
    fn a_wrong_dir_variable_is_an_error_not_a_fallback() {
        let t = tempfile::tempdir().unwrap();
        let env: HashMap<&str, String> = [("FAKE_DIR", t.path().display().to_string())].into();
        let pkg = |_: &str| -> Result<Found, String> { panic!("must not fall back to pkg-config") };
        let err = SPEC.find_with(&|v| env.get(v).cloned(), &pkg).unwrap_err();
        assert!(err.to_string().contains("no include/fake/api.h"), "{err}");
        assert!(err.to_string().contains("Set FAKE_DIR"), "{err}");
    }

    #[test]
    fn pkg_config_comes_before_prefixes_and_must_have_the_header() {
        let t = tempfile::tempdir().unwrap();
        install(t.path(), "lib");
        let inc = t.path().join("include");
        let pkg = |_: &str| {
            Ok(Found {
                include_dirs: vec![inc.clone()],
                lib_dirs: vec![],
                libs: vec!["fake".into()],
                version: Some("1.2".into()),
                how: String::new(),
            })
        };
        let found = SPEC.find_with(&|_| None, &pkg).unwrap();
        assert_eq!(
            (found.how.as_str(), found.version.as_deref()),
            ("pkg-config fake", Some("1.2"))
        );
        let empty = tempfile::tempdir().unwrap();
        let wrong = empty.path().to_path_buf();
        let pkg = |_: &str| {
            Ok(Found {
                include_dirs: vec![wrong.clone()],
                lib_dirs: vec![],
                libs: vec![],
                version: None,
                how: String::new(),
            })
        };
        let err = SPEC.find_with(&|_| None, &pkg).unwrap_err();
        assert!(
            err.attempts
                .iter()
                .any(|a| a.contains("found, but no fake/api.h")),
            "{err}"
        );
    }

    #[test]
    fn globbed_prefixes_are_tried_newest_first_and_every_failure_is_listed() {
        let t = tempfile::tempdir().unwrap();
        install(&t.path().join("1.20.0"), "lib");
        install(&t.path().join("1.22.0"), "lib64");
        std::fs::create_dir_all(t.path().join("2.0.0-broken")).unwrap();
        let glob = format!("{}/*", t.path().display());
        let spec = LibrarySpec {
            prefixes: &[glob.as_str()],
            ..SPEC
        };
        let found = spec.find_with(&|_| None, &no_pkg).unwrap();
        assert_eq!(found.lib_dirs, vec![t.path().join("1.22.0/lib64")]);
        let none = LibrarySpec {
            prefixes: &["/nonexistent/prefix"],
            ..SPEC
        };
        let err = none.find_with(&|_| None, &no_pkg).unwrap_err();
        let text = err.to_string();
        for needle in [
            "FAKE_DIR: not set",
            "pkg-config fake: package not found",
            "/nonexistent/prefix: no include/fake/api.h",
        ] {
            assert!(text.contains(needle), "{text} lacks {needle}");
        }
    }

    #[test]
    fn static_inline_functions_are_wrapped_and_linkable() {
        // bindgen + cc on a header of our own: the generated wrapper is a
        // real symbol in the static library.
        let t = tempfile::tempdir().unwrap();
        let inc = t.path().join("include");
        std::fs::create_dir_all(&inc).unwrap();
        std::fs::write(
            inc.join("inl.h"),
            "static inline int add_one(int x) { return x + 1; }\n",
        )
        .unwrap();
        let found = Found {
            include_dirs: vec![inc],
            lib_dirs: vec![],
            libs: vec![],
            version: None,
            how: "test".into(),
        };
        let spec = BindingsSpec {
            wrapper: "#include <inl.h>\n",
            functions: &["add_one"],
            wrap_static_fns: true,
            links: "inl",
            ..Default::default()
        };
        // cc reads TARGET/HOST/OPT_LEVEL from the environment of a build script.
        let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
        for (k, v) in [
            ("TARGET", triple.as_str()),
            ("HOST", triple.as_str()),
            ("OPT_LEVEL", "0"),
            ("OUT_DIR", t.path().to_str().unwrap()),
        ] {
            if std::env::var_os(k).is_none() {
                // SAFETY-free in edition 2021; only this test sets them.
                std::env::set_var(k, v);
            }
        }
        let out = generate_bindings(&found, &spec, t.path()).unwrap();
        let text = std::fs::read_to_string(out).unwrap();
        assert!(text.contains("add_one__inl_static"), "{text}");
        assert!(t.path().join("libinl_static_fns.a").is_file());
    }

    #[test]
    fn wrapping_without_a_links_value_is_an_error() {
        if std::env::var_os("CARGO_MANIFEST_LINKS").is_some() {
            return; // never set for this crate's tests; guard anyway
        }
        let t = tempfile::tempdir().unwrap();
        let found = Found {
            include_dirs: vec![],
            lib_dirs: vec![],
            libs: vec![],
            version: None,
            how: "test".into(),
        };
        let spec = BindingsSpec {
            wrapper: "static inline int f(void) { return 0; }\n",
            wrap_static_fns: true,
            ..Default::default()
        };
        let err = generate_bindings(&found, &spec, t.path()).unwrap_err();
        assert!(err.contains("BindingsSpec::links"), "{err}");
    }

    #[test]
    fn wrapper_names_are_per_crate_and_valid_c_identifiers() {
        assert_eq!(static_fns_lib("fabric"), "fabric_static_fns");
        assert_eq!(static_fns_suffix("fabric"), "__fabric_static");
        assert_eq!(static_fns_lib("daos-fs.1"), "daos_fs_1_static_fns");
        assert_ne!(static_fns_suffix("ucp"), static_fns_suffix("fabric"));
    }

    #[test]
    fn multiarch_dirs_follow_the_target_triple() {
        for (target, dir) in [
            ("x86_64-unknown-linux-gnu", Some("x86_64-linux-gnu")),
            ("aarch64-unknown-linux-gnu", Some("aarch64-linux-gnu")),
            ("i686-unknown-linux-gnu", Some("i386-linux-gnu")),
            ("armv7-unknown-linux-gnueabihf", Some("arm-linux-gnueabihf")),
            (
                "powerpc64le-unknown-linux-gnu",
                Some("powerpc64le-linux-gnu"),
            ),
            ("riscv64gc-unknown-linux-gnu", Some("riscv64-linux-gnu")),
            ("s390x-unknown-linux-gnu", Some("s390x-linux-gnu")),
            ("x86_64-unknown-linux-musl", Some("x86_64-linux-musl")),
            ("aarch64-apple-darwin", None),
            ("x86_64-pc-windows-msvc", None),
        ] {
            assert_eq!(multiarch_dir(target).as_deref(), dir, "{target}");
        }
    }

    #[test]
    fn prefixes_search_the_target_multiarch_dir_not_the_hosts() {
        let t = tempfile::tempdir().unwrap();
        // Only the aarch64 copy exists: an x86_64 host cross-building for
        // aarch64 must find it, and a native x86_64 build must not.
        install(t.path(), "lib/aarch64-linux-gnu");
        let prefix = t.path().display().to_string();
        let spec = LibrarySpec {
            prefixes: &[prefix.as_str()],
            ..SPEC
        };
        let env = |target: &'static str| move |v: &str| (v == "TARGET").then(|| target.to_string());
        let found = spec
            .find_with(&env("aarch64-unknown-linux-gnu"), &no_pkg)
            .unwrap();
        assert_eq!(found.lib_dirs, vec![t.path().join("lib/aarch64-linux-gnu")]);
        let err = spec
            .find_with(&env("x86_64-unknown-linux-gnu"), &no_pkg)
            .unwrap_err();
        assert!(err.to_string().contains("lib/x86_64-linux-gnu/"), "{err}");
    }

    #[test]
    fn docs_rs_uses_the_checked_in_bindings_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let checked_in = t.path().join("checked_in.rs");
        std::fs::write(&checked_in, "pub const CHECKED_IN: u8 = 1;\n").unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let unset = |_: &str| None;
        assert!(!docs_rs_bindings_with(&unset, &checked_in, &out).unwrap());
        assert!(!out.join("bindings.rs").exists());
        let docs_rs = |v: &str| (v == "DOCS_RS").then(|| "1".to_string());
        assert!(docs_rs_bindings_with(&docs_rs, &checked_in, &out).unwrap());
        assert_eq!(
            std::fs::read_to_string(out.join("bindings.rs")).unwrap(),
            "pub const CHECKED_IN: u8 = 1;\n"
        );
        let err = docs_rs_bindings_with(&docs_rs, &t.path().join("missing.rs"), &out).unwrap_err();
        assert!(err.contains("missing.rs"), "{err}");
    }
}
