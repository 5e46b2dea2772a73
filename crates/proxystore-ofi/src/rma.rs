//! One-sided reads' libfabric calls: objects staged at put in registered
//! slabs (`mr`), other memory registered in place, `fi_read` of an owner's
//! region into a pooled buffer, and the release a reader sends back (a
//! message to the owner's [`RELEASE_ROUTE`], outside the peer wire format).
//! Descriptors, pins, releases' meaning and deadlines are
//! `proxystore_peer::rma`'s.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use libfabric_sys as sys;
use proxystore_core::{Error, Result};
use proxystore_peer::pool;
use proxystore_peer::rma::{Expose, Region, Registration};

use crate::engine::Engine;
use crate::fabric::CONNECTOR;
use crate::mr::{map_slab, register, target};
use crate::state::Op;
use crate::wire::RELEASE_ROUTE;

/// `PROXYSTORE_OFI_ONE_SIDED`: `Some(true)` for `on`, `Some(false)` for
/// `off`, `None` when unset (or unknown, with a warning). Read once.
fn one_sided_setting() -> Option<bool> {
    static SETTING: OnceLock<Option<bool>> = OnceLock::new();
    *SETTING.get_or_init(
        || match std::env::var("PROXYSTORE_OFI_ONE_SIDED").as_deref() {
            Ok("on") => Some(true),
            Ok("off") => Some(false),
            Err(_) => None,
            Ok(other) => {
                tracing::warn!(
                    value = other,
                    "PROXYSTORE_OFI_ONE_SIDED is 'on' or 'off'; ignored"
                );
                None
            }
        },
    )
}

/// Whether this process's gets ask owners for descriptors and read
/// one-sided (and puts stage objects in registered slabs):
/// `PROXYSTORE_OFI_ONE_SIDED=on|off` decides, unset is on. The provider
/// must grant FI_RMA too ([`Engine::reads_one_sided`]). On by default even
/// where RMA is emulated in software (tcp;ofi_rxm): measured there, two
/// processes, the two paths were within noise of each other (1 MiB 426 vs
/// 364 us, 64 MiB 27.4 vs 30.4 ms one-sided vs bytes in the reply,
/// medians of five rounds, docs/benchmarks.md).
pub fn reads_one_sided() -> bool {
    one_sided_setting().unwrap_or(true)
}

/// How long a release may wait for the provider to take it (see
/// [`Engine::send_release`]).
pub(crate) const RELEASE_SEND_WAIT: Duration = Duration::from_millis(100);

impl Engine {
    /// Whether this endpoint's gets read one-sided: the provider granted
    /// FI_RMA and [`reads_one_sided`] says so. (An owner registers
    /// objects for readers that ask either way.)
    pub fn reads_one_sided(&self) -> bool {
        self.one_sided() && reads_one_sided()
    }

    fn no_rma(&self) -> Error {
        Error::Unsupported {
            connector: CONNECTOR.into(),
            op: "one-sided reads (the provider did not grant FI_RMA)",
        }
    }

    /// `data` copied into a registered slab (a free one of its size class
    /// when there is one), or `None` where the provider has no one-sided
    /// reads or would not register.
    pub fn stage(&self, data: &Bytes) -> Option<Bytes> {
        if !self.one_sided() {
            return None;
        }
        self.shared.arena.stage(data, |class| {
            let st = self.shared.lock();
            // SAFETY: the live endpoint of this domain, under the lock.
            unsafe { map_slab(&st.fabric.domain, st.fabric.ep, class) }
        })
    }

    /// How many slabs this endpoint has registered (free or in use).
    pub fn slabs(&self) -> usize {
        self.shared.arena.mapped()
    }

    /// Registers `data` for reads by peers: a staged object's slab is
    /// registered already (a lookup); other memory is registered in place.
    pub fn register(&self, data: &Bytes) -> Result<Registration> {
        if !self.one_sided() {
            return Err(self.no_rma());
        }
        if let Some(remote_key) = self.shared.arena.remote_key_of(data) {
            return Ok(Registration {
                remote_key,
                cheap: true,
                keep: Box::new(()),
            });
        }
        let st = self.shared.lock();
        // SAFETY: the caller (the peer exposures) keeps `data` alive as
        // long as the registration; the live endpoint, under the lock.
        let (mr, remote_key) =
            unsafe { register(&st.fabric.domain, st.fabric.ep, data.as_ptr(), data.len())? };
        drop(st);
        Ok(Registration {
            remote_key,
            cheap: false,
            keep: Box::new(mr),
        })
    }

    /// Reads `region` of the endpoint at raw address `owner` into a pooled
    /// buffer, waiting at most `timeout`.
    pub fn read(&self, owner: &[u8], region: Region, timeout: Duration) -> Result<Bytes> {
        if !self.one_sided() {
            return Err(self.no_rma());
        }
        let (key, addr) =
            target(&region.remote_key, region.addr).ok_or_else(|| Error::Transport {
                connector: CONNECTOR.into(),
                source: format!(
                    "a remote descriptor's key of {} bytes is malformed",
                    region.remote_key.len()
                )
                .into(),
            })?;
        if region.len == 0 {
            return Ok(Bytes::new());
        }
        let len = region.len;
        let mut buf = pool::take(len).ok_or(Error::TooLarge {
            what: "one-sided read (no memory for it)",
            size: len as u64,
            limit: isize::MAX as u64,
        })?;
        let dest = buf.as_mut_ptr();
        // One budget for posting (a provider saying "try again") and
        // waiting.
        let deadline = std::time::Instant::now() + timeout;
        let (route, rx) = self.open_route();
        let posted = {
            let found = self.shared.lock().peer(owner);
            found.and_then(|(src, peer)| {
                let op = Op::Read {
                    buf,
                    len,
                    route,
                    peer: Arc::clone(&peer),
                };
                let what = "one-sided read (the provider kept saying try again)";
                self.post_op(op, "fi_read", what, &peer, timeout, |st, ctx| {
                    // SAFETY: live endpoint; `dest` is the pooled buffer the
                    // context owns until the read completes or the endpoint
                    // closes; `len` fits it.
                    unsafe {
                        sys::fi_read(
                            st.fabric.ep,
                            dest.cast(),
                            len,
                            std::ptr::null_mut(),
                            src,
                            addr,
                            key,
                            ctx.cast(),
                        )
                    }
                })
            })
        };
        // A read that times out stays posted into its own buffer (freed
        // with its context); its late completion goes to a closed route.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let out = posted.and_then(|()| self.wait(&rx, left));
        self.close_route(route);
        Ok(out?.frames.into_iter().next().unwrap_or_default())
    }

    /// Sends `release` to the endpoint at raw address `owner`, without
    /// waiting for it to arrive (a lost release only keeps memory
    /// registered until the owner's grace period ends).
    ///
    /// Gives up after 100 ms (`RELEASE_SEND_WAIT`): to an owner that died
    /// the provider says "try again" until the send wait ends, and a
    /// release is not worth retrying that long.
    pub fn send_release(&self, owner: &[u8], release: Bytes) {
        let sent = self.send_within(
            owner,
            RELEASE_ROUTE,
            RELEASE_ROUTE,
            vec![release],
            RELEASE_SEND_WAIT,
        );
        if let Err(e) = sent {
            tracing::debug!(error = %e, "a release could not be sent");
        }
    }

    /// Releases arriving here go to `exposures`, and the background thread
    /// sweeps it.
    pub fn accept_releases(&self, exposures: Arc<dyn Expose>) {
        self.shared.lock().releases = Some(exposures);
    }

    /// Stops passing releases on (the server that accepted them stopped)
    /// and lets go of the exposures: they own the layer that owns this
    /// engine, so keeping them is a cycle and the engine (its endpoint,
    /// fds and progress thread) would never close.
    pub fn stop_releases(&self) {
        let exposures = self.shared.lock().releases.take();
        // Dropped outside the engine lock, which closing registrations takes.
        drop(exposures);
    }
}
