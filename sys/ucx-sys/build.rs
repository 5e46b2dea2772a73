//! Finds UCX (UCX_DIR, pkg-config `ucx`, or a well-known prefix) and
//! generates bindings to the UCP API.

use proxystore_build_support::{build_sys_crate, BindingsSpec, LibrarySpec};
use std::path::Path;

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

const BINDINGS: BindingsSpec<'static> = BindingsSpec {
    wrapper: "#include <ucp/api/ucp.h>\n#include <ucs/config/global_opts.h>\n",
    functions: &["ucp_.*", "ucs_status_string", "ucs_global_opts_set_value"],
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

fn main() {
    if let Err(e) = build_sys_crate(&UCX, Path::new(PREGENERATED), &BINDINGS) {
        eprintln!("ucx-sys: {e}");
        std::process::exit(1);
    }
}
