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
//! without probing or linking anything. [`build_sys_crate`] is that whole
//! script in one call (what `ucx-sys` and `libfabric-sys` use).
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

mod bindings;

pub use bindings::{
    docs_rs_bindings, docs_rs_bindings_with, generate_bindings, static_fns_lib, static_fns_suffix,
    BindingsSpec, CHECKED_IN_BINDINGS_CFG,
};

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
            // pkg-config's message spans lines (the first may be blank):
            // its "Package x was not found" line if there is one, else the
            // first line with text.
            let text = e.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.clone().next().unwrap_or("failed");
            lines
                .find(|l| l.contains("not found"))
                .unwrap_or(first)
                .to_string()
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

/// The whole build script of a `-sys` crate, in the one order every such
/// crate follows: under `DOCS_RS`, the checked-in bindings and nothing else
/// ([`docs_rs_bindings`]); otherwise rerun triggers, discovery of `library`
/// (every failed attempt in the error), its link lines, and `bindings`
/// generated into `OUT_DIR`. The caller prints the error and exits.
pub fn build_sys_crate(
    library: &LibrarySpec<'_>,
    checked_in: &Path,
    bindings: &BindingsSpec<'_>,
) -> Result<(), String> {
    let out_dir = std::env::var_os("OUT_DIR")
        .map(PathBuf::from)
        .ok_or("OUT_DIR is not set (call this from a build script)")?;
    if docs_rs_bindings(checked_in, &out_dir)? {
        return Ok(()); // documentation only: nothing is probed or linked
    }
    rerun_if_env_changed(library);
    let found = library.find().map_err(|e| e.to_string())?;
    found.emit_cargo_metadata();
    generate_bindings(&found, bindings, &out_dir)?;
    Ok(())
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
}
