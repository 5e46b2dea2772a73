//! Arena names and the stale-arena sweep.
//!
//! An arena is `<dir>/arenas/<pid>-<start>-<random>.arena`: the owner's pid,
//! its start time (clock ticks after boot, field 22 of `/proc/<pid>/stat`;
//! 0 where that is unknown) and 32 random bits. An arena is stale when
//! `kill(pid, 0)` says no such process, or the process with that pid started
//! at another time (the pid was reused). The sweep marks a stale arena dead
//! in its header (processes still mapping it stop serving its objects), then
//! unlinks it; their mappings stay valid until dropped.

use std::io;
use std::path::Path;

/// Longest arena name accepted from a key.
const MAX_NAME_LEN: usize = 64;

/// A new arena name for this process.
pub(crate) fn new_name() -> String {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    let random = (proxystore_core::ObjectId::random().as_u128() & 0xffff_ffff) as u32;
    format!("{pid}-{start}-{random:08x}")
}

/// The owner pid and start time an arena name records, if it is one.
pub(crate) fn parse_name(name: &str) -> Option<(u32, u64)> {
    if name.len() > MAX_NAME_LEN {
        return None;
    }
    let mut parts = name.split('-');
    let (pid, start, random) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let pid = decimal(pid)?;
    let start = decimal(start)?;
    // pid 0 and negative pid_t values name process groups in kill(2).
    let pid = u32::try_from(pid)
        .ok()
        .filter(|&p| p > 0 && p <= i32::MAX as u32)?;
    Some((pid, start))
}

fn decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// When process `pid` started, in clock ticks after boot (Linux `/proc`).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields
    // after it start past the last ')'. starttime is field 22, the 20th
    // after the name.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that made an arena named `(pid, start)` still runs.
pub(crate) fn owner_alive(pid: u32, start: u64) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process
    // exists (raw > 0, so it names one process, not a group).
    let rc = unsafe { libc::kill(raw, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // Alive (or alive under another user: EPERM). The same process only if
    // it started when the name says.
    match start_time(pid) {
        Some(now) if start != 0 => now == start,
        _ => true,
    }
}

/// Marks dead and unlinks every arena in `arenas` whose owner is gone;
/// returns how many. Errors (another process sweeping the same arena, a
/// file that is not an arena) leave that file alone.
pub(crate) fn sweep(arenas: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(arenas) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".arena")) else {
            continue;
        };
        let Some((pid, start)) = parse_name(name) else {
            continue;
        };
        if owner_alive(pid, start) {
            continue;
        }
        let path = entry.path();
        if let Err(e) = super::block::mark_dead(&path) {
            tracing::debug!(path = %path.display(), error = %e, "could not mark a stale arena dead");
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                swept += 1;
                tracing::info!(path = %path.display(), pid, "removed the arena of a dead process");
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "could not remove a stale arena")
            }
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_what_they_must() {
        let name = new_name();
        let (pid, start) = parse_name(&name).unwrap_or_default();
        assert_eq!(pid, std::process::id());
        assert_eq!(Some(start), start_time(pid).or(Some(0)));
        assert!(owner_alive(pid, start));
        for bad in [
            "",
            "1-2",
            "1-2-3",
            "0-5-deadbeef",
            "-1-5-deadbeef",
            "4294967295-5-deadbeef",
            "1-2-deadbeef-x",
            "../1-2-deadbeef",
            "1-2-deadbeeg",
            "+1-2-deadbeef",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_reused_pid_is_not_its_old_owner() {
        let pid = std::process::id();
        if let Some(start) = start_time(pid) {
            assert!(!owner_alive(pid, start + 1));
        }
    }
}
