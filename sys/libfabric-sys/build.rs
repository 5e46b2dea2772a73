//! Finds libfabric (LIBFABRIC_DIR, pkg-config `libfabric`, or a well-known
//! prefix such as Cray's /opt/cray/libfabric/<version>) and generates
//! bindings; the `static inline` API (the whole data path: fi_domain,
//! fi_endpoint, fi_mr_reg, fi_read, fi_send, fi_cq_read, fi_close, ...) is
//! wrapped into real symbols named after this crate (`<fn>__fabric_static`,
//! in `libfabric_static_fns.a`).

use proxystore_build_support::{
    docs_rs_bindings, generate_bindings, rerun_if_env_changed, BindingsSpec, LibrarySpec,
};
use std::path::{Path, PathBuf};

const LIBFABRIC: LibrarySpec<'static> = LibrarySpec {
    name: "libfabric",
    env_prefix: "LIBFABRIC",
    pkg_config: &["libfabric"],
    header: "rdma/fabric.h",
    libs: &["fabric"],
    prefixes: &[
        "/usr",
        "/usr/local",
        "/opt/cray/libfabric/*",
        "/opt/libfabric",
    ],
};

/// Bindings generated from Debian's libfabric 1.17 headers, for builds that
/// have no libfabric to generate from (docs.rs). A test keeps them equal to
/// what a 1.17 build generates.
const PREGENERATED: &str = "src/bindings_libfabric_1_17.rs";

const WRAPPER: &str = "#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_tagged.h>
#include <rdma/fi_errno.h>
";

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()));
    match docs_rs_bindings(Path::new(PREGENERATED), &out_dir) {
        // Documentation only: nothing is probed or linked.
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            eprintln!("libfabric-sys: {e}");
            std::process::exit(1);
        }
    }
    rerun_if_env_changed(&LIBFABRIC);
    let found = match LIBFABRIC.find() {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    found.emit_cargo_metadata();
    let spec = BindingsSpec {
        wrapper: WRAPPER,
        functions: &["fi_.*"],
        types: &["fi_.*", "fid_.*", "fid"],
        vars: &["FI_.*"],
        wrap_static_fns: true,
        links: "fabric",
    };
    if let Err(e) = generate_bindings(&found, &spec, &out_dir) {
        eprintln!("libfabric-sys: {e}");
        std::process::exit(1);
    }
}
