//! Finds UCX (UCX_DIR, pkg-config `ucx`, or a well-known prefix) and
//! generates bindings to the UCP API.

use proxystore_build_support::{
    generate_bindings, rerun_if_env_changed, BindingsSpec, LibrarySpec,
};

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

fn main() {
    rerun_if_env_changed(&UCX);
    let found = match UCX.find() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    found.emit_cargo_metadata();
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
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
    };
    if let Err(e) = generate_bindings(&found, &spec, &out_dir) {
        eprintln!("ucx-sys: {e}");
        std::process::exit(1);
    }
}
