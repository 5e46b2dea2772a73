//! Finds libfabric (LIBFABRIC_DIR, pkg-config `libfabric`, or a well-known
//! prefix such as Cray's /opt/cray/libfabric/<version>) and generates
//! bindings; the `static inline` API (the whole data path: fi_domain,
//! fi_endpoint, fi_mr_reg, fi_read, fi_send, fi_cq_read, fi_close, ...) is
//! wrapped into real symbols named after this crate (`<fn>__fabric_static`,
//! in `libfabric_static_fns.a`).

use proxystore_build_support::{build_sys_crate, BindingsSpec, LibrarySpec};
use std::path::Path;

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

const BINDINGS: BindingsSpec<'static> = BindingsSpec {
    wrapper: WRAPPER,
    functions: &["fi_.*"],
    types: &["fi_.*", "fid_.*", "fid"],
    vars: &["FI_.*"],
    wrap_static_fns: true,
    links: "fabric",
};

fn main() {
    if let Err(e) = build_sys_crate(&LIBFABRIC, Path::new(PREGENERATED), &BINDINGS) {
        eprintln!("libfabric-sys: {e}");
        std::process::exit(1);
    }
}
