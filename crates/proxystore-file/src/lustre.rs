//! Lustre striping for the object directory.

use std::path::Path;
use std::process::Command;

use proxystore_core::{Error, Result};

/// `f_type` of a Lustre mount in `statfs(2)`.
const LUSTRE_SUPER_MAGIC: i64 = 0x0BD0_0BD0;

/// A Lustre file layout: how many OSTs each object is striped over, and the
/// stripe size in bytes. Set once on the directory with `lfs setstripe`; new
/// objects inherit it. Large objects read by many nodes want a wide stripe
/// (a count near the number of OSTs), small ones a count of 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LustreStripe {
    /// Stripe count (number of OSTs).
    pub count: u32,
    /// Stripe size in bytes (a multiple of 64 KiB).
    pub size: u64,
}

/// Whether `dir` is on a Lustre file system.
pub fn is_lustre(dir: &Path) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Config(format!("{} contains a NUL byte", dir.display())))?;
    // SAFETY: statfs is plain old data; zeroed is a valid initial value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid,
    // writable statfs for the duration of the call.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(Error::io(
            format!("statfs {}", dir.display()),
            std::io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets.
    Ok(stat.f_type as i64 == LUSTRE_SUPER_MAGIC)
}

/// Sets `stripe` as the default layout of `dir` if it is on Lustre; logs and
/// does nothing elsewhere.
pub(crate) fn apply_stripe(dir: &Path, stripe: LustreStripe) -> Result<()> {
    if stripe.size == 0 || stripe.size % (64 << 10) != 0 {
        return Err(Error::Config(format!(
            "Lustre stripe size {} is not a positive multiple of 64 KiB",
            stripe.size
        )));
    }
    if !is_lustre(dir)? {
        tracing::info!(dir = %dir.display(), "not on Lustre; stripe settings ignored");
        return Ok(());
    }
    let out = Command::new("lfs")
        .arg("setstripe")
        .arg("-c")
        .arg(stripe.count.to_string())
        .arg("-S")
        .arg(stripe.size.to_string())
        .arg(dir)
        .output()
        .map_err(|e| Error::io(format!("running lfs setstripe on {}", dir.display()), e))?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "lfs setstripe -c {} -S {} {} failed: {}",
            stripe.count,
            stripe.size,
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
