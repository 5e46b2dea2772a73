//! The bindings against the real library: versions agree, and the wrapped
//! `static inline` functions (`fi_allocinfo`, `fi_domain`, `fi_close`) run.

use std::ffi::CStr;
use std::ptr;

use super::*;

#[test]
fn the_pregenerated_bindings_match_a_1_17_build() {
    // docs.rs builds use src/bindings_libfabric_1_17.rs; where this build
    // generated from 1.17 headers, the two must be the same.
    if (FI_MAJOR_VERSION, FI_MINOR_VERSION) != (1, 17) {
        eprintln!("libfabric headers are not 1.17: pregenerated bindings not compared");
        return;
    }
    let generated = include_str!(concat!(env!("OUT_DIR"), "/bindings.rs"));
    let pregenerated = include_str!("bindings_libfabric_1_17.rs");
    assert!(
        generated == pregenerated,
        "regenerate src/bindings_libfabric_1_17.rs from OUT_DIR/bindings.rs"
    );
}

#[test]
fn linked_library_matches_the_headers() {
    // SAFETY: fi_version has no arguments and no preconditions.
    let linked = unsafe { fi_version() };
    assert_eq!(
        linked >> 16,
        FI_MAJOR_VERSION,
        "library and headers differ in major version"
    );
    assert!(
        linked >= fi_version_of(FI_MAJOR_VERSION, FI_MINOR_VERSION),
        "the library is older than the headers"
    );
}

/// Providers offering reliable datagram endpoints, by name.
fn rdm_providers() -> Vec<(String, *mut fi_info)> {
    let mut out = Vec::new();
    // SAFETY: fi_allocinfo (wrapped inline) returns zeroed, owned hints;
    // fi_getinfo fills `info` with a list this test frees; the strings read
    // are NUL-terminated ones libfabric owns.
    unsafe {
        let hints = fi_allocinfo();
        assert!(!hints.is_null(), "fi_allocinfo");
        (*(*hints).ep_attr).type_ = fi_ep_type_FI_EP_RDM;
        (*hints).caps = u64::from(FI_MSG);
        let mut info: *mut fi_info = ptr::null_mut();
        let version = fi_version_of(FI_MAJOR_VERSION, FI_MINOR_VERSION);
        let rc = fi_getinfo(version, ptr::null(), ptr::null(), 0, hints, &mut info);
        fi_freeinfo(hints);
        assert_eq!(rc, 0, "fi_getinfo: {}", error_text(rc));
        let mut at = info;
        while !at.is_null() {
            let name = CStr::from_ptr((*(*at).fabric_attr).prov_name)
                .to_string_lossy()
                .into_owned();
            out.push((name, at));
            at = (*at).next;
        }
    }
    out
}

fn error_text(rc: i32) -> String {
    // SAFETY: fi_strerror returns a static string for any code.
    unsafe { CStr::from_ptr(fi_strerror(-rc)) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn wrapped_inline_functions_open_and_close_a_domain() {
    let providers = rdm_providers();
    let names: Vec<&str> = providers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| *n == "shm") && names.iter().any(|n| n.starts_with("tcp")),
        "shm and tcp providers (CI installs libfabric): {names:?}"
    );
    let (_, info) = providers
        .iter()
        .find(|(n, _)| n == "shm")
        .expect("shm provider");
    // SAFETY: `info` is an entry of a live fi_getinfo list; every object
    // opened is closed once, children first; the list is freed last.
    unsafe {
        let mut fabric: *mut fid_fabric = ptr::null_mut();
        let rc = fi_fabric((**info).fabric_attr, &mut fabric, ptr::null_mut());
        assert_eq!(rc, 0, "fi_fabric: {}", error_text(rc));
        let mut domain: *mut fid_domain = ptr::null_mut();
        // fi_domain is static inline: this is the wrapper symbol.
        let rc = fi_domain(fabric, *info, &mut domain, ptr::null_mut());
        assert_eq!(rc, 0, "fi_domain: {}", error_text(rc));
        assert_eq!(fi_close(&mut (*domain).fid), 0, "fi_close(domain)");
        assert_eq!(fi_close(&mut (*fabric).fid), 0, "fi_close(fabric)");
        // The head of the list frees all of it.
        fi_freeinfo(providers[0].1);
    }
}
