//! A throwaway `redis-server` on a free loopback port, for tests and for
//! `proxystore bench --connector redis`; stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxystore_core::{Error, Result};

use crate::resp::{Connection, Endpoint, Reply};

/// A `redis-server` child process listening on 127.0.0.1.
#[derive(Debug)]
pub struct LocalRedisServer {
    child: Child,
    port: u16,
    extra: Vec<String>,
}

impl LocalRedisServer {
    /// Starts `redis-server` (from `PATH`) with persistence off and waits
    /// until it answers PING (at most 10 s).
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// Like [`LocalRedisServer::start`], with extra `redis-server` flags
    /// (`--requirepass`, `--unixsocket`, ...).
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("finding a free loopback port", e))?
            .port();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(port, &extra)?;
        let mut server = LocalRedisServer { child, port, extra };
        server.wait_ready()?;
        Ok(server)
    }

    /// Kills the server (SIGKILL) and starts a fresh one, with the same
    /// flags, on the same port; its data is gone. For tests of clients
    /// that hold connections across a server restart.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = spawn(self.port, &self.extra)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let endpoint = Endpoint::parse(&self.url())?;
        loop {
            if let Ok(mut con) = Connection::connect(&endpoint, Duration::from_millis(200), 1024) {
                // A password-protected server answers NOAUTH: up all the same.
                if matches!(con.call(&[b"PING"]), Ok(Reply::Status(_) | Reply::Error(_))) {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::PeerUnreachable {
                    address: self.url(),
                    reason: format!("redis-server exited: {status}"),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::PeerUnreachable {
                    address: self.url(),
                    reason: "redis-server did not answer within 10 s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server process's id (to signal it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalRedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `redis-server` on 127.0.0.1:`port` with persistence off and `extra` flags.
fn spawn(port: u16, extra: &[String]) -> Result<Child> {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::io(
                "starting redis-server (is the redis-server package installed?)",
                e,
            )
        })
}

/// Whether `redis-server` can be started here.
pub fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
