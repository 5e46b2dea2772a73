//! Running Python ProxyStore itself from Rust tests, for interop checks.

use std::process::Command;

/// Runs `script` with `python3 -c` and `args` as `sys.argv[1..]`, after a
/// prelude that imports `sys`, `numpy` and Python ProxyStore's
/// `serialize`/`deserialize`; returns its stdout, and fails the test if it
/// fails. `None` (with a printed `SKIP:` reason) where python3 with
/// proxystore and numpy is missing (`ci/install-deps.sh` installs them).
pub fn python_proxystore(script: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import proxystore, numpy"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIP: python3 with proxystore and numpy not installed (ci/install-deps.sh installs them)"
        );
        return None;
    }
    let prelude =
        "import sys\nimport numpy\nfrom proxystore.serialize import serialize, deserialize\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running python3: {e}"));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
