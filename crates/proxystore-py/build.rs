//! Rust tests of this crate embed Python: make them load the libpython
//! PyO3 linked against (the `python3` on PATH when building), not whichever
//! one the loader finds first, or none. Wheels (maturin sets
//! PYO3_BUILD_EXTENSION_MODULE) do not link libpython and get no rpath.

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_BUILD_EXTENSION_MODULE");
    if std::env::var_os("PYO3_BUILD_EXTENSION_MODULE").is_some() {
        return;
    }
    let unix = std::env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f == "unix");
    if let (true, Some(dir)) = (unix, pyo3_build_config::get().lib_dir()) {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
