//! Two `-sys` crates that both wrap `static inline` functions link into one
//! binary. Both wrap the same helper name from the same header name (what two
//! crates including a shared header would do), with different bodies, so a
//! binary that mixed the two up prints the wrong numbers.

#![allow(clippy::unwrap_used, missing_docs)]

use proxystore_build_support::{generate_bindings, static_fns_lib, BindingsSpec, Found};
use std::path::{Path, PathBuf};
use std::process::Command;

/// cc reads these from a build script's environment; a test has none.
fn build_script_env(out_dir: &Path) {
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    for (k, v) in [
        ("TARGET", triple.as_str()),
        ("HOST", triple.as_str()),
        ("OPT_LEVEL", "0"),
        ("OUT_DIR", out_dir.to_str().unwrap()),
    ] {
        if std::env::var_os(k).is_none() {
            // Edition 2021: set_var is safe; this binary has one test.
            std::env::set_var(k, v);
        }
    }
}

/// Generates one crate's bindings and wrapper library under `root/<links>`,
/// as that crate's build script would in its own OUT_DIR.
fn sys_crate(root: &Path, links: &str, body: &str) -> (PathBuf, PathBuf) {
    let dir = root.join(links);
    let inc = dir.join("include");
    let out = dir.join("out");
    std::fs::create_dir_all(&inc).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        inc.join("ps_inline.h"),
        format!("static inline int ps_scale(int x) {{ return {body}; }}\n"),
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
        wrapper: "#include <ps_inline.h>\n",
        functions: &["ps_scale"],
        wrap_static_fns: true,
        links,
        ..Default::default()
    };
    let bindings = generate_bindings(&found, &spec, &out).unwrap();
    (bindings, out)
}

#[test]
fn two_sys_crates_with_wrapped_inline_functions_link_into_one_binary() {
    let t = tempfile::tempdir().unwrap();
    build_script_env(t.path());
    let (alpha, alpha_out) = sys_crate(t.path(), "alpha", "x + 1");
    let (beta, beta_out) = sys_crate(t.path(), "beta", "x * 10");

    let main_rs = t.path().join("main.rs");
    std::fs::write(
        &main_rs,
        format!(
            r#"#![allow(unused_unsafe)]
mod alpha {{ include!({alpha:?}); }}
mod beta {{ include!({beta:?}); }}
fn main() {{
    // SAFETY: both wrappers are pure integer arithmetic.
    let (a, b) = unsafe {{ (alpha::ps_scale(4), beta::ps_scale(4)) }};
    println!("{{a}} {{b}}");
}}
"#
        ),
    )
    .unwrap();
    let exe = t.path().join("two_sys");
    // What cargo passes rustc for the final binary: each crate's OUT_DIR as
    // a search dir and each crate's wrapper library.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .args(["--edition", "2021", "-o"])
        .arg(&exe)
        .arg(&main_rs)
        .arg("-L")
        .arg(format!("native={}", alpha_out.display()))
        .arg("-L")
        .arg(format!("native={}", beta_out.display()))
        .arg("-l")
        .arg(format!("static={}", static_fns_lib("alpha")))
        .arg("-l")
        .arg(format!("static={}", static_fns_lib("beta")))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "linking both crates failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success());
    // 4 + 1 from alpha's header, 4 * 10 from beta's: each crate reached
    // its own wrapper.
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "5 40");
}
