//! Finds libzmq (ZMQ_DIR, pkg-config `libzmq`, or a well-known prefix) and
//! generates bindings to its API (`zmq.h`).

use proxystore_build_support::{build_sys_crate, BindingsSpec, LibrarySpec};
use std::path::Path;

const LIBZMQ: LibrarySpec<'static> = LibrarySpec {
    name: "libzmq",
    env_prefix: "ZMQ",
    pkg_config: &["libzmq"],
    header: "zmq.h",
    libs: &["zmq"],
    prefixes: &["/usr", "/usr/local", "/opt/zeromq", "/opt/zeromq/*"],
};

/// Bindings generated from Debian's libzmq 4.3.4 header, for builds that
/// have no libzmq to generate from (docs.rs). A test keeps them equal to
/// what a 4.3 build generates.
const PREGENERATED: &str = "src/bindings_zmq_4_3.rs";

const BINDINGS: BindingsSpec<'static> = BindingsSpec {
    wrapper: "#include <zmq.h>\n",
    functions: &["zmq_.*"],
    types: &["zmq_.*"],
    vars: &["ZMQ_.*"],
    wrap_static_fns: false,
    links: "zmq",
};

fn main() {
    if let Err(e) = build_sys_crate(&LIBZMQ, Path::new(PREGENERATED), &BINDINGS) {
        eprintln!("zmq-sys: {e}");
        std::process::exit(1);
    }
}
