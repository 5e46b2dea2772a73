//! Bindings: bindgen with an allowlist, wrappers of `static inline`
//! functions named per crate, and the `DOCS_RS` rule.

use std::path::{Path, PathBuf};

use crate::Found;

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
/// `Ok(false)` and the script goes on to [`LibrarySpec::find`](crate::LibrarySpec::find).
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
