//! `mpi-raw`: the bare passive-target read `proxystore bench` measures
//! the connector against: `MPI_Win_lock(SHARED)`, one `MPI_Get` of the
//! object into a pooled buffer, `MPI_Win_flush`, `MPI_Win_unlock`, on the
//! same dynamic window and the same attached memory the connector reads,
//! with no directory lookup, key, store or codec. Gets only: the
//! connector's put is a request to the owner, which has no one-sided
//! counterpart to hold it to.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use proxystore_core::registry::RawSession;
use proxystore_core::{Connector, Error, Key, Result};

use crate::layer::parse_owner;
use crate::member::{self, Member};
use crate::{MpiConnector, PeerConfig, KIND};

fn owner_slot() -> &'static Mutex<Option<String>> {
    static OWNER: Mutex<Option<String>> = Mutex::new(None);
    &OWNER
}

/// Makes `mpi-raw` sessions read from the data server at `address` (the
/// owning rank's, in `proxystore bench`).
pub fn set_owner(address: &str) {
    *owner_slot().lock().unwrap_or_else(|e| e.into_inner()) = Some(address.to_string());
}

/// One `mpi-raw` session: the payload put once to the owner (listed in
/// its directory), located once, then read bare.
pub struct RawRead {
    member: Arc<Member>,
    rank: u32,
    addr: u64,
    len: u64,
    key: Key,
    putter: MpiConnector,
}

impl RawRead {
    /// Puts `payload` to the owner set by [`set_owner`] and finds where it
    /// lives in the owner's window.
    pub fn start(payload: &Bytes) -> Result<Self> {
        let owner = owner_slot()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::Config("mpi-raw: no owner rank set (set_owner)".into()))?;
        let member = member::current().ok_or_else(member::no_job)?;
        let mut config = PeerConfig::new(KIND, crate::ADDRESS);
        config.server = Some(owner.clone());
        let putter = MpiConnector::with_config(config)?;
        let key = putter.put(payload.clone())?;
        let rank = parse_owner(&owner)
            .ok_or_else(|| Error::Config(format!("mpi-raw: bad owner address {owner}")))?
            .rank;
        let entry = member.locate(rank, key.id())?.ok_or(Error::Internal {
            what: "mpi-raw: the owner did not list the payload",
        })?;
        Ok(RawRead {
            member,
            rank,
            addr: entry.addr,
            len: entry.len,
            key,
            putter,
        })
    }
}

impl RawSession for RawRead {
    fn put(&mut self, _data: &Bytes) -> Result<()> {
        Err(Error::Unsupported {
            connector: "mpi-raw".into(),
            op: "put (mpi-raw measures gets only)",
        })
    }

    fn get(&mut self) -> Result<Option<Bytes>> {
        self.member
            .read_region(self.rank, self.addr, self.len)
            .map(Some)
    }
}

impl Drop for RawRead {
    fn drop(&mut self) {
        let _ = self.putter.evict(&self.key);
    }
}
