//! Finds DAOS (DAOS_DIR, pkg-config `daos`, /usr, /opt/daos, /opt/daos/*)
//! and picks one of two modes:
//!
//! - *linked*: bindgen over the installed `daos.h` (which pulls in
//!   `daos_kv.h`, `daos_event.h`, ...; parsing it needs `<uuid/uuid.h>`),
//!   `libdaos` and `libgurt` linked, cfg `daos_linked` set;
//! - *unlinked* (DAOS not found and `DAOS_DIR` not set): bindgen over the
//!   minimal header `include-min/daos.h` (transcribed from DAOS 2.6.4)
//!   through the same `generate_bindings`, and `csrc/stub.c`, compiled
//!   against that header, defining every function to return `-DER_NOSYS`.
//!   A `cargo:warning` says so and how to link.
//!
//! `DAOS_DIR` set to a prefix without DAOS fails the build, listing what
//! was tried: an explicit choice never silently becomes the unlinked mode.
//! There is no Cargo feature that forces linking (`ci/test.sh` builds with
//! `--all-features` on machines without DAOS).

use proxystore_build_support::{
    docs_rs_bindings, generate_bindings, rerun_if_env_changed, BindingsSpec, Found, LibrarySpec,
};
use std::path::{Path, PathBuf};

const DAOS: LibrarySpec<'static> = LibrarySpec {
    name: "DAOS",
    env_prefix: "DAOS",
    pkg_config: &["daos"],
    header: "daos.h",
    libs: &["daos", "gurt"],
    prefixes: &["/usr", "/opt/daos", "/opt/daos/*"],
};

/// The cfg set when the crate links libdaos.
const LINKED_CFG: &str = "daos_linked";

/// Bindings generated from the minimal header, for DOCS_RS builds; a test
/// keeps them equal to what an unlinked build generates.
const PREGENERATED: &str = "src/bindings_min_2_6.rs";

/// The minimal header's directory and the stub defined against it.
const MIN_INCLUDE: &str = "include-min";
const STUB: &str = "csrc/stub.c";

/// Everything the connector calls, by the names bindgen sees (the `2`
/// symbols, not the `daos_pool_connect` / `daos_cont_open` /
/// `daos_obj_generate_oid` macros).
const BINDINGS: BindingsSpec<'static> = BindingsSpec {
    wrapper: "#include <daos.h>\n",
    functions: &[
        "daos_init",
        "daos_fini",
        "daos_pool_connect2",
        "daos_pool_disconnect",
        "daos_cont_open2",
        "daos_cont_close",
        "daos_obj_generate_oid2",
        "daos_oclass_name2id",
        "daos_kv_(open|close|put|get|remove)",
        "daos_eq_(create|destroy|poll)",
        "daos_event_(init|fini|abort)",
        "d_errstr",
    ],
    types: &[
        "daos_handle_t",
        "daos_event_t",
        "daos_obj_id_t",
        "daos_size_t",
        "daos_errno",
        "daos_otype_t",
        "daos_oclass_id_t",
        "daos_oclass_hints_t",
    ],
    vars: &[
        "DAOS_PC_R[OW]",
        "DAOS_COO_R[OW]",
        "DAOS_OO_R[OW]",
        "DAOS_EQ_(NO)?WAIT",
        "DAOS_API_VERSION_(MAJOR|MINOR|FIX)",
    ],
    wrap_static_fns: false,
    links: "daos",
};

fn main() {
    if let Err(e) = run() {
        eprintln!("daos-sys: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    println!("cargo::rustc-check-cfg=cfg({LINKED_CFG})");
    if docs_rs_bindings(Path::new(PREGENERATED), &out_dir)? {
        return Ok(()); // documentation only: nothing is probed or linked
    }
    rerun_if_env_changed(&DAOS);
    println!("cargo:rerun-if-changed={MIN_INCLUDE}/daos.h");
    println!("cargo:rerun-if-changed={STUB}");
    let dir_var = DAOS.dir_var();
    let explicit = std::env::var(&dir_var).is_ok_and(|d| !d.is_empty());
    match DAOS.find() {
        Ok(found) => {
            found.emit_cargo_metadata();
            generate_bindings(&found, &BINDINGS, &out_dir)?;
            println!("cargo:rustc-cfg={LINKED_CFG}");
            println!("cargo:linked=1");
            Ok(())
        }
        // An explicit DAOS_DIR that is wrong is an error, never a fallback.
        Err(not_found) if explicit => Err(not_found.to_string()),
        Err(not_found) => {
            println!(
                "cargo:warning=DAOS not found ({}); daos-sys is built unlinked against its minimal DAOS 2.6.4 header: real DAOS pools fail with Unsupported, `mock://` pools work. To link, set {dir_var} to the DAOS install prefix (on Aurora: module use /soft/modulefiles; module load daos; export {dir_var}=<prefix of daos.h>) and rebuild.",
                not_found.attempts.join("; ")
            );
            unlinked(&out_dir)
        }
    }
}

/// Bindings from the minimal header and the `-DER_NOSYS` stub library.
fn unlinked(out_dir: &Path) -> Result<(), String> {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?,
    );
    let include = manifest.join(MIN_INCLUDE);
    let found = Found {
        include_dirs: vec![include.clone()],
        lib_dirs: vec![],
        libs: vec![],
        version: None,
        how: format!("minimal header {}", include.display()),
    };
    generate_bindings(&found, &BINDINGS, out_dir)?;
    cc::Build::new()
        .file(manifest.join(STUB))
        .include(&include)
        .warnings(true)
        .try_compile("daos_stub")
        .map_err(|e| format!("compiling {STUB}: {e}"))?;
    println!("cargo:include={}", include.display());
    println!("cargo:linked=0");
    Ok(())
}
