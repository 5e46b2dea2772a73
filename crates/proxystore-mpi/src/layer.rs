//! The socket layer and one-sided calls `PeerConnector<MpiLayer>` runs
//! on: requests over MPI messages (or the mock's channels), gets straight
//! from the owner's window through its directory.
//!
//! Addresses are `mpi://<job>/<rank>/<port>`: the job id (16 hex digits),
//! the owner's rank in the communicator given to [`crate::init`], and the
//! data server's port on that rank (a rank may run several connectors).
//! An endpoint to serve on is `mpi://` (or `mpi://<job>`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proxystore_core::{Error, Key, ObjectId, Result};
use proxystore_peer::rma::{Expose, Region, Registration};
use proxystore_peer::wire::Limits;
use proxystore_peer::{ClientSocket, Frames, OneSided, ServerSocket, SocketLayer};

use crate::member::{self, Member, Net};

/// The scheme of MPI addresses.
pub const SCHEME: &str = "mpi://";

/// Where an address points inside a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) job: u64,
    pub(crate) rank: u32,
    pub(crate) port: u32,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SCHEME}{:016x}/{}/{}", self.job, self.rank, self.port)
    }
}

/// Parses `mpi://<job>/<rank>/<port>`.
pub(crate) fn parse_owner(address: &str) -> Option<Owner> {
    let rest = address.strip_prefix(SCHEME)?;
    let mut parts = rest.split('/');
    let job = parts.next().filter(|j| j.len() == 16)?;
    let job = u64::from_str_radix(job, 16).ok()?;
    let rank = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Owner { job, rank, port })
}

/// The MPI socket layer: this process's job state (see [`crate::init`]),
/// captured when the layer is made.
#[derive(Debug)]
pub struct MpiLayer {
    member: Option<Arc<Member>>,
}

impl Default for MpiLayer {
    /// The job state of this process (or of the mock rank this thread
    /// plays); without one, every call fails naming [`crate::init`].
    fn default() -> Self {
        MpiLayer {
            member: member::current(),
        }
    }
}

impl MpiLayer {
    fn member(&self) -> Result<&Arc<Member>> {
        self.member.as_ref().ok_or_else(member::no_job)
    }

    /// The owner `address` names, checked against this job.
    fn owner(&self, address: &str) -> Result<Owner> {
        let me = self.member()?.info();
        let owner = parse_owner(address).ok_or_else(|| {
            Error::Config(format!(
                "mpi: '{address}' is not an MPI address (mpi://<job>/<rank>/<port>)"
            ))
        })?;
        if owner.job != me.job {
            return Err(Error::Config(format!(
                "mpi: {address} belongs to job {:016x}, this process is in job {:016x}: \
                 mpi keys are valid only inside the job that made them",
                owner.job, me.job
            )));
        }
        if owner.rank >= me.ranks {
            return Err(Error::Config(format!(
                "mpi: {address} names rank {}, outside this job's {} ranks",
                owner.rank, me.ranks
            )));
        }
        Ok(owner)
    }
}

#[cfg(feature = "mock")]
fn mock_name(owner: Owner) -> String {
    format!(
        "mock://mpi-{:016x}-{}-{}",
        owner.job, owner.rank, owner.port
    )
}

enum ServerInner {
    Real(crate::p2p::Server),
    #[cfg(feature = "mock")]
    Mock(proxystore_peer::mock::MockServer),
}

/// A data server's listening side (MPI messages, or the mock's channels);
/// counts the requests it receives (a get the directory answers never
/// reaches it).
pub struct MpiServer {
    inner: ServerInner,
    member: Arc<Member>,
}

#[derive(Debug)]
enum ReplyInner {
    Real(crate::p2p::ReplyTo),
    #[cfg(feature = "mock")]
    Mock(<proxystore_peer::mock::MockServer as ServerSocket>::Peer),
}

/// Where a reply goes.
#[derive(Debug)]
pub struct MpiReplyTo(ReplyInner);

enum ClientInner {
    Real(crate::p2p::Client),
    #[cfg(feature = "mock")]
    Mock(proxystore_peer::mock::MockClient),
}

/// One client connection.
pub struct MpiClient(ClientInner);

impl SocketLayer for MpiLayer {
    type Server = MpiServer;
    type Client = MpiClient;

    const DEFAULT_ENDPOINT: Option<&'static str> = Some(crate::ADDRESS);

    fn name(&self) -> &'static str {
        crate::KIND
    }

    fn bind(&self, endpoint: &str, limits: &Limits) -> Result<(MpiServer, String)> {
        let member = self.member()?;
        let info = member.info();
        let rest = endpoint.strip_prefix(SCHEME).ok_or_else(|| {
            Error::Config(format!(
                "mpi: endpoint '{endpoint}' must start with {SCHEME}"
            ))
        })?;
        if !rest.is_empty() && rest.trim_end_matches('/') != format!("{:016x}", info.job) {
            return Err(Error::Config(format!(
                "mpi: endpoint '{endpoint}' names another job; serve on {SCHEME} (this rank's own)"
            )));
        }
        let owner = Owner {
            job: info.job,
            rank: info.rank,
            port: member.next_port()?,
        };
        let inner = match member.net() {
            Net::Real(comm) => ServerInner::Real(comm.serve(owner.port, limits.max_frame())),
            #[cfg(feature = "mock")]
            Net::Mock(_) => {
                let (s, _) = proxystore_peer::mock::MockLayer.bind(&mock_name(owner), limits)?;
                ServerInner::Mock(s)
            }
        };
        let server = MpiServer {
            inner,
            member: Arc::clone(member),
        };
        Ok((server, owner.to_string()))
    }

    fn connect(&self, address: &str, limits: &Limits) -> Result<MpiClient> {
        let owner = self.owner(address)?;
        match self.member()?.net() {
            Net::Real(comm) => Ok(MpiClient(ClientInner::Real(comm.connect(
                owner.rank,
                owner.port,
                limits.max_frame(),
            )?))),
            #[cfg(feature = "mock")]
            Net::Mock(_) => Ok(MpiClient(ClientInner::Mock(
                proxystore_peer::mock::MockLayer.connect(&mock_name(owner), limits)?,
            ))),
        }
    }

    fn any_port(&self, _endpoint: &str) -> String {
        SCHEME.to_string()
    }

    fn needs_secret(&self, endpoint: &str) -> bool {
        // Only ranks of this job reach an mpi:// endpoint.
        !endpoint.starts_with(SCHEME)
    }

    fn one_sided(&self) -> Option<&dyn OneSided> {
        Some(self)
    }
}

impl ServerSocket for MpiServer {
    type Peer = MpiReplyTo;

    fn recv(&mut self, timeout: Duration) -> Result<Option<(MpiReplyTo, Frames)>> {
        let got = match &mut self.inner {
            ServerInner::Real(s) => s
                .recv(timeout)?
                .map(|(p, f)| (MpiReplyTo(ReplyInner::Real(p)), f)),
            #[cfg(feature = "mock")]
            ServerInner::Mock(s) => s
                .recv(timeout)?
                .map(|(p, f)| (MpiReplyTo(ReplyInner::Mock(p)), f)),
        };
        if got.is_some() {
            self.member.count_request();
        }
        Ok(got)
    }

    fn send(&mut self, peer: MpiReplyTo, frames: Frames) -> Result<()> {
        match (&mut self.inner, peer.0) {
            (ServerInner::Real(s), ReplyInner::Real(p)) => s.send(p, frames),
            #[cfg(feature = "mock")]
            (ServerInner::Mock(s), ReplyInner::Mock(p)) => s.send(p, frames),
            #[cfg(feature = "mock")]
            _ => Err(Error::Config(
                "mpi: a reply to a client of another server".into(),
            )),
        }
    }
}

impl ClientSocket for MpiClient {
    fn send(&mut self, frames: Frames, timeout: Duration) -> Result<()> {
        match &mut self.0 {
            ClientInner::Real(c) => c.send(frames, timeout),
            #[cfg(feature = "mock")]
            ClientInner::Mock(c) => c.send(frames, timeout),
        }
    }

    fn recv(&mut self, timeout: Duration) -> Result<Option<Frames>> {
        match &mut self.0 {
            ClientInner::Real(c) => c.recv(timeout),
            #[cfg(feature = "mock")]
            ClientInner::Mock(c) => c.recv(timeout),
        }
    }
}

impl OneSided for MpiLayer {
    /// Never asks an owner for a descriptor: an owner has none to give (see
    /// `register`), so a request would only make it try and fail.
    fn reads_one_sided_from(&self, _owner: &str) -> bool {
        false
    }

    fn stage_min(&self) -> usize {
        // Every object is staged and listed: small gets are direct too.
        0
    }

    fn stage(&self, data: Bytes) -> Bytes {
        match &self.member {
            Some(m) => m.stage(data),
            None => data,
        }
    }

    fn published(&self, id: ObjectId, data: &Bytes) {
        if let Some(m) = &self.member {
            m.publish(id, data);
        }
    }

    fn withdrawn(&self, id: ObjectId) {
        if let Some(m) = &self.member {
            m.withdraw(id);
        }
    }

    /// The directory read: no timeout applies inside it (a passive-target
    /// epoch needs nothing of the owner's process; a dead owner aborts the
    /// job, see the crate docs).
    fn get_direct(&self, key: &Key, _timeout: Duration) -> Option<Result<Bytes>> {
        let address = key.location()?;
        let owner = match self.owner(address) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let member = match self.member() {
            Ok(m) => m,
            Err(e) => return Some(Err(e)),
        };
        let max = key.size().unwrap_or(u64::MAX);
        member.read_listed(owner.rank, key.id(), max).transpose()
    }

    fn register(&self, _data: &Bytes) -> Result<Registration> {
        // Objects are listed in the directory instead of being offered as
        // descriptors (and no MPI reader asks for one, see
        // `reads_one_sided_from`); an owner asked anyway sends the bytes.
        Err(Error::Unsupported {
            connector: crate::KIND.into(),
            op: "descriptors (mpi lists objects in its directory instead)",
        })
    }

    fn read(&self, address: &str, region: Region, _timeout: Duration) -> Result<Bytes> {
        let owner = self.owner(address)?;
        self.member()?
            .read_region(owner.rank, region.addr, region.len as u64)
    }

    fn send_release(&self, _address: &str, _release: Bytes) {
        // No descriptor is ever handed out (see `register`).
    }

    fn accept_releases(&self, _address: &str, _exposures: Arc<dyn Expose>) {}
}
