//! The DAOS layer: the handful of client calls the connector makes (init,
//! pool connect, container open, KV open, KV put / get / size query /
//! remove launched on an event queue, event-queue poll), behind a trait so
//! an in-process mock can stand in for a DAOS system. Every call returns
//! DAOS's own return code (`0` or `-DER_*`), which [`der_error`] (the one
//! place DAOS failures are translated) turns into the core error.

use std::ffi::CString;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::Error;

/// A handle the layer hands out (pool, container, KV object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(pub u64);

/// One KV operation. An [`EventQueue`] owns it, and its buffers, from
/// launch to completion (DAOS reads and writes them asynchronously).
#[derive(Debug)]
pub enum KvOp {
    /// `daos_kv_put` of `value` under `key`.
    Put {
        /// The KV key (a NUL-terminated string, as DAOS takes it).
        key: CString,
        /// The value, sent as is.
        value: Bytes,
    },
    /// `daos_kv_get` into a fresh buffer of `size` bytes; with `size` 0,
    /// the size query alone (a null buffer). A value longer than `size`
    /// completes with `-DER_REC2BIG`; a missing key with size 0.
    Get {
        /// The KV key.
        key: CString,
        /// The buffer size to read into.
        size: u64,
    },
    /// `daos_kv_remove` (a missing key is fine).
    Remove {
        /// The KV key.
        key: CString,
    },
}

/// A finished operation.
#[derive(Debug, Default)]
pub struct Completion {
    /// The tag it was launched with.
    pub tag: usize,
    /// Its return code: `0` or `-DER_*`.
    pub rc: i32,
    /// For a get: the value's size as DAOS reported it (0 when absent).
    pub size: u64,
    /// For a get with a buffer: the bytes read (`size` of them).
    pub data: Option<Vec<u8>>,
}

/// A DAOS event queue bound to one KV object: operations are launched as
/// events and reaped by polling, so a batch is one round of concurrent
/// operations.
pub trait EventQueue: Send {
    /// Launches `op` as the event tagged `tag`; a nonzero return is the
    /// launch's failure (the operation then never completes).
    fn launch(&mut self, tag: usize, op: KvOp) -> i32;
    /// Waits at most `timeout` for completions, appending them to `out`;
    /// returns how many, or `-DER_*`.
    fn poll(&mut self, timeout: Duration, out: &mut Vec<Completion>) -> i32;
    /// Operations launched and not yet reaped.
    fn in_flight(&self) -> usize;
    /// Aborts every operation in flight and reaps them, so the queue can be
    /// reused or dropped.
    fn abort(&mut self);
}

/// The DAOS client calls the connector needs.
pub trait DaosLayer: Send + Sync + fmt::Debug {
    /// `daos_init`, once per process (later calls return its first result).
    fn init(&self) -> i32;
    /// `daos_pool_connect` (read-write).
    fn pool_connect(&self, pool: &str) -> Result<Handle, i32>;
    /// `daos_cont_open` (read-write).
    fn cont_open(&self, pool: Handle, container: &str) -> Result<Handle, i32>;
    /// `daos_obj_generate_oid` of a hashed-key KV object from the 96 low
    /// bits of `oid` (`lo`, `hi`) and object class `oclass` (empty: the
    /// container's default), then `daos_kv_open` (read-write).
    fn kv_open(&self, container: Handle, oid: (u64, u64), oclass: &str) -> Result<Handle, i32>;
    /// `daos_eq_create`: a queue whose operations act on the KV object `kv`.
    fn eq_create(&self, kv: Handle) -> Result<Box<dyn EventQueue>, i32>;
    /// `daos_kv_close`, `daos_cont_close`, `daos_pool_disconnect`, in order.
    fn close(&self, pool: Handle, container: Handle, kv: Handle);
    /// The name of a return code (`DER_NONEXIST`): `d_errstr` when linked.
    fn errstr(&self, rc: i32) -> String;
}

/// The DER codes the connector maps, with their names: what `d_errstr`
/// answers for them, used by the mock and where `d_errstr` is a stub.
pub const DER_NAMES: &[(u32, &str)] = {
    use daos_sys as d;
    &[
        (d::daos_errno_DER_NO_PERM, "DER_NO_PERM"),
        (d::daos_errno_DER_NO_HDL, "DER_NO_HDL"),
        (d::daos_errno_DER_INVAL, "DER_INVAL"),
        (d::daos_errno_DER_EXIST, "DER_EXIST"),
        (d::daos_errno_DER_NONEXIST, "DER_NONEXIST"),
        (d::daos_errno_DER_UNREACH, "DER_UNREACH"),
        (d::daos_errno_DER_NOSPACE, "DER_NOSPACE"),
        (d::daos_errno_DER_NOMEM, "DER_NOMEM"),
        (d::daos_errno_DER_NOSYS, "DER_NOSYS"),
        (d::daos_errno_DER_TIMEDOUT, "DER_TIMEDOUT"),
        (d::daos_errno_DER_BUSY, "DER_BUSY"),
        (d::daos_errno_DER_AGAIN, "DER_AGAIN"),
        (d::daos_errno_DER_UNINIT, "DER_UNINIT"),
        (d::daos_errno_DER_TRUNC, "DER_TRUNC"),
        (d::daos_errno_DER_CANCELED, "DER_CANCELED"),
        (d::daos_errno_DER_HG, "DER_HG"),
        (d::daos_errno_DER_EXCLUDED, "DER_EXCLUDED"),
        (d::daos_errno_DER_IO, "DER_IO"),
        (d::daos_errno_DER_KEY2BIG, "DER_KEY2BIG"),
        (d::daos_errno_DER_REC2BIG, "DER_REC2BIG"),
        (d::daos_errno_DER_EQ_BUSY, "DER_EQ_BUSY"),
        (d::daos_errno_DER_SHUTDOWN, "DER_SHUTDOWN"),
        (d::daos_errno_DER_INPROGRESS, "DER_INPROGRESS"),
        (d::daos_errno_DER_CSUM, "DER_CSUM"),
        (d::daos_errno_DER_DATA_LOSS, "DER_DATA_LOSS"),
        (d::daos_errno_DER_RF, "DER_RF"),
        (d::daos_errno_DER_AGENT_COMM, "DER_AGENT_COMM"),
        (d::daos_errno_DER_NOTSUPPORTED, "DER_NOTSUPPORTED"),
        (d::daos_errno_DER_NO_SERVICE, "DER_NO_SERVICE"),
        (d::daos_errno_DER_CONT_NONEXIST, "DER_CONT_NONEXIST"),
    ]
};

/// `-DER_<code>` as a return code.
pub(crate) const fn rc(code: u32) -> i32 {
    -(code as i32)
}

/// The name of `rc` from [`DER_NAMES`] (`DER_UNKNOWN(-n)` otherwise).
pub fn der_name(rc: i32) -> String {
    DER_NAMES
        .iter()
        .find(|(code, _)| -(*code as i64) == i64::from(rc))
        .map_or_else(
            || format!("DER_UNKNOWN({rc})"),
            |(_, name)| name.to_string(),
        )
}

/// What a successful or absent result was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The call succeeded.
    Done,
    /// `-DER_NONEXIST`: the thing asked for is not there.
    Absent,
}

/// Where a call went, for messages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Site<'a> {
    /// The operation (`kv get`).
    pub(crate) op: &'static str,
    /// The pool label or UUID (or `mock://name`).
    pub(crate) pool: &'a str,
    /// The container, the KV key, ...
    pub(crate) target: &'a str,
    /// The bound the connector put on waiting.
    pub(crate) timeout: Duration,
}

/// Maps a DAOS return code to an outcome or the core error: the one place
/// DER codes are translated. `requested`/`actual` are a get's buffer size
/// and the value's size, for `-DER_REC2BIG`.
pub(crate) fn der_error(
    layer: &dyn DaosLayer,
    site: Site<'_>,
    code: i32,
    requested: u64,
    actual: u64,
) -> Result<Outcome, Error> {
    use daos_sys as d;
    if code == 0 {
        return Ok(Outcome::Done);
    }
    let name = layer.errstr(code);
    let what = format!(
        "{} {} in pool {}: {name} ({code})",
        site.op, site.target, site.pool
    );
    let err = match code.checked_neg().and_then(|c| u32::try_from(c).ok()) {
        Some(d::daos_errno_DER_NONEXIST) => return Ok(Outcome::Absent),
        Some(d::daos_errno_DER_NO_PERM) => Error::Config(format!(
            "{what}: permission denied (check the pool and container ACLs)"
        )),
        Some(d::daos_errno_DER_CONT_NONEXIST) => Error::Config(format!(
            "{what}: no such container (create it: daos container create {} <label>)",
            site.pool
        )),
        Some(d::daos_errno_DER_TIMEDOUT) => Error::Timeout {
            connector: crate::KIND.into(),
            op: site.op,
            after: site.timeout,
        },
        Some(
            d::daos_errno_DER_UNREACH
            | d::daos_errno_DER_EXCLUDED
            | d::daos_errno_DER_HG
            | d::daos_errno_DER_SHUTDOWN
            | d::daos_errno_DER_NO_SERVICE
            | d::daos_errno_DER_AGENT_COMM,
        ) => Error::PeerUnreachable {
            address: format!("daos pool {}", site.pool),
            reason: format!("{} {}: {name} ({code})", site.op, site.target),
        },
        Some(d::daos_errno_DER_REC2BIG) => Error::TooLarge {
            what: "DAOS value (longer than its key's size says)",
            size: actual,
            limit: requested,
        },
        Some(d::daos_errno_DER_NOSYS | d::daos_errno_DER_NOTSUPPORTED) => Error::Unsupported {
            connector: crate::KIND.into(),
            op: site.op,
        },
        _ => Error::Transport {
            connector: crate::KIND.into(),
            source: what.into(),
        },
    };
    Err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::mock::MockDaos;
    use daos_sys as d;

    fn map(code: u32) -> Result<Outcome, Error> {
        let site = Site {
            op: "kv get",
            pool: "tank",
            target: "0123",
            timeout: Duration::from_secs(3),
        };
        der_error(&MockDaos::new(), site, rc(code), 100, 200)
    }

    #[test]
    fn der_codes_become_typed_errors_naming_the_code() {
        assert_eq!(
            der_error(
                &MockDaos::new(),
                Site {
                    op: "x",
                    pool: "p",
                    target: "t",
                    timeout: Duration::ZERO
                },
                0,
                0,
                0
            )
            .unwrap(),
            Outcome::Done
        );
        assert_eq!(map(d::daos_errno_DER_NONEXIST).unwrap(), Outcome::Absent);
        assert!(
            matches!(map(d::daos_errno_DER_NO_PERM), Err(Error::Config(m)) if m.contains("DER_NO_PERM") && m.contains("tank"))
        );
        assert!(
            matches!(map(d::daos_errno_DER_TIMEDOUT), Err(Error::Timeout { after, .. }) if after == Duration::from_secs(3))
        );
        assert!(
            matches!(map(d::daos_errno_DER_UNREACH), Err(Error::PeerUnreachable { address, .. }) if address.contains("tank"))
        );
        assert!(matches!(
            map(d::daos_errno_DER_REC2BIG),
            Err(Error::TooLarge {
                size: 200,
                limit: 100,
                ..
            })
        ));
        assert!(matches!(
            map(d::daos_errno_DER_NOSYS),
            Err(Error::Unsupported { .. })
        ));
        let other = map(d::daos_errno_DER_IO).unwrap_err().to_string();
        assert!(other.contains("DER_IO (-2001)"), "{other}");
        let unknown = der_error(
            &MockDaos::new(),
            Site {
                op: "x",
                pool: "p",
                target: "t",
                timeout: Duration::ZERO,
            },
            -77,
            0,
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("DER_UNKNOWN(-77)"), "{unknown}");
    }

    #[test]
    fn the_name_table_has_each_code_once() {
        for (i, (code, name)) in DER_NAMES.iter().enumerate() {
            assert_eq!(der_name(rc(*code)), *name);
            assert!(DER_NAMES[i + 1..].iter().all(|(c, _)| c != code), "{name}");
        }
    }
}
