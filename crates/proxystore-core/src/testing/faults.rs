//! Fault injection for the network connectors' fault tests, written once
//! and used by every connector's `tests/faults.rs`: resource counts of
//! this process (fds, threads), a peer that accepts and never answers, a
//! relay that cuts a reply short, signals to child processes, a server
//! namespace joined to this one by a veth pair whose link can go down, and
//! the checks every fault test makes (a typed error within the timeout).
//!
//! Linux only (reads `/proc/self`, runs `ip` and `kill`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Serializes the fault tests of one test binary: fd and thread counts are
/// per process, so two fault tests running at once would see each other's.
/// Hold the guard for the whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    WAITING.fetch_sub(1, Ordering::SeqCst);
    guard
}

/// Test threads blocked in [`serial`]: libtest starts them while a fault
/// test runs, so [`thread_count`] leaves them out.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Entries of a `/proc/self` directory.
fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, Iterator::count)
}

/// Open file descriptors of this process (`/proc/self/fd`).
pub fn fd_count() -> usize {
    // The directory handle itself shows up as one entry.
    count_dir("/proc/self/fd").saturating_sub(1)
}

/// Threads of this process (`/proc/self/task`), less the test threads
/// waiting in [`serial`] for their turn.
pub fn thread_count() -> usize {
    count_dir("/proc/self/task").saturating_sub(WAITING.load(Ordering::SeqCst))
}

/// This process's fds and threads at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Open file descriptors.
    pub fds: usize,
    /// Threads.
    pub threads: usize,
}

impl Resources {
    /// The counts now.
    pub fn now() -> Self {
        Resources {
            fds: fd_count(),
            threads: thread_count(),
        }
    }

    /// Waits up to 3 s (threads exit and sockets close asynchronously) for
    /// the counts to be back within `slack` of `self` (the baseline);
    /// panics naming `what` and both counts if they are not.
    pub fn assert_back(&self, slack: Resources, what: &str) -> Resources {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let now = Resources::now();
            if now.fds <= self.fds + slack.fds && now.threads <= self.threads + slack.threads {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: leaked resources: baseline {self:?}, now {now:?} (slack {slack:?})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Checks a fault test's outcome: `result` is an error of a variant
/// `typed` accepts, and it came no later than `timeout` + 1 s after
/// `started`. Prints the fault, the error and the elapsed time (what
/// docs/reliability.md reports); returns the error.
pub fn assert_typed_error_in_time<T: std::fmt::Debug>(
    fault: &str,
    result: Result<T, Error>,
    typed: impl Fn(&Error) -> bool,
    started: Instant,
    timeout: Duration,
) -> Error {
    let elapsed = started.elapsed();
    let err = match result {
        Err(e) => e,
        Ok(v) => panic!("{fault}: expected an error, got Ok({v:?})"),
    };
    println!(
        "FAULT {fault}: {} after {} ms (timeout {} ms): {err}",
        variant(&err),
        elapsed.as_millis(),
        timeout.as_millis()
    );
    assert!(typed(&err), "{fault}: unexpected error variant: {err:?}");
    assert!(
        elapsed <= timeout + Duration::from_secs(1),
        "{fault}: error came after {elapsed:?}, past the timeout {timeout:?} + 1 s: {err}"
    );
    err
}

/// The errors a dead or unreachable peer may give: `PeerUnreachable` or
/// `Timeout`.
pub fn unreachable_or_timeout(e: &Error) -> bool {
    matches!(e, Error::PeerUnreachable { .. } | Error::Timeout { .. })
}

/// The interface-down fault: `reader` reads `key` (`expected`) from its
/// owner behind `host`, the link goes down, and the next get of `key` is
/// a typed error ([`unreachable_or_timeout`]) within `timeout` + 1 s.
pub fn assert_link_down_fails_typed(
    fault: &str,
    host: &ServerHost,
    reader: &dyn crate::Connector,
    key: &crate::Key,
    expected: &bytes::Bytes,
    timeout: Duration,
) {
    assert_eq!(
        reader
            .get(key)
            .expect("get before the link goes down")
            .as_ref(),
        Some(expected),
        "{fault}: the object before the link went down"
    );
    host.link_down();
    let started = Instant::now();
    assert_typed_error_in_time(
        fault,
        reader.get(key),
        unreachable_or_timeout,
        started,
        timeout,
    );
}

/// The variant's name, for reports.
pub fn variant(e: &Error) -> &'static str {
    match e {
        Error::NotFound { .. } => "NotFound",
        Error::InvalidKey { .. } => "InvalidKey",
        Error::Timeout { .. } => "Timeout",
        Error::Unsupported { .. } => "Unsupported",
        Error::PeerUnreachable { .. } => "PeerUnreachable",
        Error::Config(_) => "Config",
        Error::UnknownConnector { .. } => "UnknownConnector",
        Error::Closed { .. } => "Closed",
        Error::Io { .. } => "Io",
        Error::Codec { .. } => "Codec",
        Error::TooLarge { .. } => "TooLarge",
        Error::StoreExists(_) => "StoreExists",
        Error::LifetimeEnded => "LifetimeEnded",
        Error::Unauthorized { .. } => "Unauthorized",
        Error::Internal { .. } => "Internal",
        Error::TaskFailed { .. } => "TaskFailed",
        Error::Transport { .. } => "Transport",
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Accepts connections on `listener` in a thread, handing each to
/// `serve`, until `stop` is set; the stream clones are kept so drop can
/// shut every connection down.
struct Acceptor {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn start(serve: impl Fn(TcpStream, &Mutex<Vec<TcpStream>>) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
        let address = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let serve = Arc::new(serve);
        let accept = {
            let (stop, streams, threads) = (stop.clone(), streams.clone(), threads.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Ok(clone) = conn.try_clone() {
                        lock(&streams).push(clone);
                    }
                    let (serve, streams) = (serve.clone(), streams.clone());
                    let handle = std::thread::spawn(move || serve(conn, &streams));
                    lock(&threads).push(handle);
                }
            })
        };
        Acceptor {
            address,
            stop,
            streams,
            threads,
            accept: Some(accept),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop with one last connection.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for s in lock(&self.streams).drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// A TCP peer on 127.0.0.1 that accepts every connection and never sends
/// a byte (it reads and discards what comes, so a client's send never
/// blocks on a full buffer). Stops, closing everything, when dropped.
pub struct SilentPeer(Acceptor);

impl SilentPeer {
    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        SilentPeer(Acceptor::start(|mut conn, _| {
            let mut sink = [0u8; 64 << 10];
            while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
        }))
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> SocketAddr {
        self.0.address
    }
}

/// What a [`TruncatingRelay`] does once it has passed on `cut` bytes of
/// the server's replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterCut {
    /// Closes the connection to the client (a peer that died mid-reply).
    Close,
    /// Keeps the connection open and sends nothing more (a peer that
    /// stalled mid-reply).
    Stall,
}

/// A TCP relay on 127.0.0.1 in front of `upstream`: passes requests on
/// whole, passes the replies on only up to `cut` bytes per connection,
/// then closes or stalls ([`AfterCut`]): a peer that answers with a
/// truncated frame. Stops, closing everything, when dropped.
pub struct TruncatingRelay(Acceptor);

impl TruncatingRelay {
    /// Starts relaying to `upstream`.
    pub fn start(upstream: SocketAddr, cut: usize, after: AfterCut) -> Self {
        TruncatingRelay(Acceptor::start(move |client, streams| {
            let Ok(server) = TcpStream::connect(upstream) else {
                return;
            };
            let (Ok(mut client_r), Ok(mut server_w)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            if let (Ok(a), Ok(b)) = (server.try_clone(), client.try_clone()) {
                let mut all = lock(streams);
                all.push(a);
                all.push(b);
            }
            // Requests: client to server, whole, until either side closes.
            let up = std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_r, &mut server_w);
                let _ = server_w.shutdown(Shutdown::Write);
            });
            // Replies: the first `cut` bytes only.
            let (mut server_r, mut client_w) = (server, client);
            let mut left = cut;
            let mut buf = vec![0u8; 64 << 10];
            while left > 0 {
                let n = match server_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n.min(left),
                };
                if client_w.write_all(&buf[..n]).is_err() {
                    break;
                }
                left -= n;
            }
            let _ = client_w.flush();
            if after == AfterCut::Close {
                let _ = client_w.shutdown(Shutdown::Both);
                let _ = server_r.shutdown(Shutdown::Both);
            }
            let _ = up.join();
        }))
    }

    /// `127.0.0.1:<port>`: connect clients here.
    pub fn address(&self) -> SocketAddr {
        self.0.address
    }
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`, ...) to process `pid` with
/// `kill(1)`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// A child process killed (SIGKILL) and reaped when dropped, so a failing
/// test leaves no server behind.
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// SIGKILLs the child now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// The child's pid.
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `ip` with `args`; the error says what failed.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether this process runs as root (network namespaces need it).
fn is_root() -> Result<bool, String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id: {e}"))?;
    Ok(String::from_utf8_lossy(&uid.stdout).trim() == "0")
}

/// A server host on this machine: a network namespace joined to this
/// process's namespace by a veth pair on subnet `10.<a>.<b>.0/24` (`b`
/// from the process id), the server end `10.<a>.<b>.1`, this end
/// `10.<a>.<b>.2`. Taking the
/// server's link down ([`ServerHost::link_down`]) is a node dropping off
/// the network without closing anything. Removed on drop.
pub struct ServerHost {
    ns: String,
    server_dev: String,
    local_dev: String,
    server_ip: String,
}

impl ServerHost {
    /// Sets up the namespace and link, or says why it cannot (not root,
    /// no `ip`). `tag` (a few letters) keeps names of concurrent tests
    /// apart; `a` picks `10.<a>.*.0/24` (one per test, so tests in
    /// different binaries running at once do not share a subnet).
    pub fn create(tag: &str, a: u8) -> Result<Self, String> {
        if !is_root()? {
            return Err("not root".into());
        }
        let id = std::process::id() % 100_000;
        let b = id % 250 + 1;
        let local_dev = format!("ps{tag}c{id}");
        let host = ServerHost {
            ns: format!("ps-{tag}-{id}"),
            server_dev: format!("ps{tag}s{id}"),
            local_dev: local_dev.clone(),
            server_ip: format!("10.{a}.{b}.1"),
        };
        ip(&["netns", "add", &host.ns])?;
        // From here on, drop cleans up.
        ip(&[
            "link",
            "add",
            &local_dev,
            "type",
            "veth",
            "peer",
            "name",
            &host.server_dev,
        ])?;
        ip(&["link", "set", &host.server_dev, "netns", &host.ns])?;
        let server_cidr = format!("{}/24", host.server_ip);
        let local_cidr = format!("10.{a}.{b}.2/24");
        ip(&[
            "-n",
            &host.ns,
            "addr",
            "add",
            &server_cidr,
            "dev",
            &host.server_dev,
        ])?;
        ip(&["-n", &host.ns, "link", "set", &host.server_dev, "up"])?;
        ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
        ip(&["addr", "add", &local_cidr, "dev", &local_dev])?;
        ip(&["link", "set", &local_dev, "up"])?;
        Ok(host)
    }

    /// The server end's IP address.
    pub fn server_ip(&self) -> &str {
        &self.server_ip
    }

    /// The server end's device name (inside the namespace).
    pub fn server_device(&self) -> &str {
        &self.server_dev
    }

    /// `cmd` (program, arguments, environment) run inside the namespace.
    pub fn inside(&self, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        wrapped
    }

    /// Takes the server's end of the link down.
    pub fn link_down(&self) {
        ip(&["-n", &self.ns, "link", "set", &self.server_dev, "down"]).expect("link down");
    }
}

impl Drop for ServerHost {
    fn drop(&mut self) {
        // Deleting this end deletes the pair and its route now: the
        // namespace itself lives on while sockets in it (a server's
        // connection still retransmitting to us) hold it.
        let _ = ip(&["link", "del", &self.local_dev]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Prints `SKIP: <why>` to stderr, past libtest's capture, so a skip shows
/// in CI logs.
pub fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}

/// What [`get_killing_owner`] saw: the get's result, when it started, and
/// how long a whole get took before.
pub type MidTransfer = (
    crate::error::Result<Option<bytes::Bytes>>,
    Instant,
    Duration,
);

/// One attempt at killing an owner mid-transfer: gets `key` (of `size`
/// bytes, served by process `pid`) twice, timing the second (warm) get,
/// then starts a third and SIGKILLs `pid` a third of that time into it.
/// `None` when that get still finished first (its value is checked
/// whole): the caller tries again with a fresh owner.
pub fn get_killing_owner(
    reader: &dyn crate::Connector,
    key: &crate::Key,
    size: usize,
    pid: u32,
) -> Option<MidTransfer> {
    let whole_get = || {
        let value = reader.get(key).expect("a get while the owner lives");
        assert_eq!(value.map(|b| b.len()), Some(size), "a whole object");
    };
    whole_get();
    let started = Instant::now();
    whole_get();
    let whole = started.elapsed();
    let (started, result) = std::thread::scope(|s| {
        let get = s.spawn(|| (Instant::now(), reader.get(key)));
        std::thread::sleep(whole / 3);
        signal(pid, "KILL");
        get.join().expect("the get thread")
    });
    match result {
        Ok(value) => {
            assert_eq!(value.map(|b| b.len()), Some(size), "a whole object");
            println!("the get (a whole one takes {whole:?}) finished before the kill");
            None
        }
        result => Some((result, started, whole)),
    }
}
