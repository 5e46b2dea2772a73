//! Finds UCX (UCX_DIR, pkg-config `ucx`, or a well-known prefix) and
//! generates bindings to the UCP API.

use proxystore_build_support::{
    docs_rs_bindings, generate_bindings, rerun_if_env_changed, BindingsSpec, LibrarySpec,
};
use std::path::{Path, PathBuf};

const UCX: LibrarySpec<'static> = LibrarySpec {
    name: "UCX",
    env_prefix: "UCX",
    pkg_config: &["ucx"],
    header: "ucp/api/ucp.h",
    libs: &["ucp", "uct", "ucs"],
    prefixes: &[
        "/usr",
        "/usr/local",
        "/opt/ucx",
        "/opt/cray/pe/ucx/*",
        "/opt/ucx/*",
    ],
};

/// Bindings generated from Debian's UCX 1.13 headers, for builds that have
/// no UCX to generate from (docs.rs). A test keeps them equal to what a
/// 1.13 build generates.
const PREGENERATED: &str = "src/bindings_ucx_1_13.rs";

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    match docs_rs_bindings(Path::new(PREGENERATED), &out_dir) {
        // Documentation only: nothing is probed or linked.
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            eprintln!("ucx-sys: {e}");
            std::process::exit(1);
        }
    }
    rerun_if_env_changed(&UCX);
    let found = match UCX.find() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    found.emit_cargo_metadata();
    let spec = BindingsSpec {
        wrapper: "#include <ucp/api/ucp.h>\n",
        functions: &["ucp_.*", "ucs_status_string"],
        types: &[
            "ucp_.*",
            "ucs_status_t",
            "ucs_status_ptr_t",
            "ucs_memory_type_t",
            "ucs_thread_mode_t",
        ],
        vars: &["UCP_.*", "UCS_.*"],
        wrap_static_fns: false,
        links: "ucp",
    };
    if let Err(e) = generate_bindings(&found, &spec, &out_dir) {
        eprintln!("ucx-sys: {e}");
        std::process::exit(1);
    }
}
