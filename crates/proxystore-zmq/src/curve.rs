//! ZeroMQ CURVE: encrypted, server-authenticated connections between
//! readers and data servers.
//!
//! Without CURVE the shared secret (`PROXYSTORE_ZMQ_SECRET`) crosses the
//! network in clear text with every request, so anyone who sees the
//! traffic can replay it. With CURVE every connection is encrypted (the
//! token included) and a reader only talks to a server holding the
//! secret key that matches the public key it was given.
//!
//! Keys are one pair per job: every process of the job that serves gets
//! the secret key from `PROXYSTORE_ZMQ_CURVE_SECRET_KEY`; the public key
//! comes from `PROXYSTORE_ZMQ_CURVE_SERVER_KEY` or the connector config
//! (option `curve_server_key`, written into the store config, so a
//! consumer rebuilt from a proxy knows it). The secret key is read from
//! the environment only and never written into a config, a proxy or a
//! log. Each reader makes its own client key pair (CURVE needs one; the
//! server does not check it: clients are authorized by the shared
//! secret, which CURVE now keeps confidential).

use std::collections::BTreeMap;
use std::fmt;

use proxystore_core::{Error, Result};
use proxystore_peer::is_local_endpoint;

/// The job's CURVE public key (Z85, 40 characters).
pub const SERVER_KEY_ENV: &str = "PROXYSTORE_ZMQ_CURVE_SERVER_KEY";
/// The job's CURVE secret key (Z85, 40 characters); servers need it.
pub const SECRET_KEY_ENV: &str = "PROXYSTORE_ZMQ_CURVE_SECRET_KEY";

/// Config option: `auto` (default), `on` or `off`.
const MODE_OPTION: &str = "curve";
/// Config option: the job's public key (Z85).
const SERVER_KEY_OPTION: &str = "curve_server_key";

/// When connections use CURVE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveMode {
    /// On for every endpoint that is not loopback, `ipc://` or
    /// `inproc://`, when a public key is known; loopback stays plain.
    Auto,
    /// On for every endpoint (a key is required).
    On,
    /// Never.
    Off,
}

/// A CURVE key pair as Z85 text.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeys {
    /// Public key: hand it to readers (env or config).
    pub public: String,
    /// Secret key: only in `PROXYSTORE_ZMQ_CURVE_SECRET_KEY` of the
    /// processes that serve.
    pub secret: String,
}

impl fmt::Debug for CurveKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurveKeys")
            .field("public", &self.public)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl CurveKeys {
    /// A fresh key pair for a job (what `proxystore keygen` prints).
    pub fn generate() -> Result<CurveKeys> {
        let pair = zmq::CurveKeyPair::new().map_err(|e| Error::Transport {
            connector: "zmq".into(),
            source: format!("generating a CURVE key pair (is libzmq built with CURVE?): {e}")
                .into(),
        })?;
        Ok(CurveKeys {
            public: z85(&pair.public_key)?,
            secret: z85(&pair.secret_key)?,
        })
    }
}

fn z85(key: &[u8; 32]) -> Result<String> {
    zmq::z85_encode(key).map_err(|_| Error::Internal {
        what: "Z85 encoding of a 32-byte key failed",
    })
}

/// Decodes a Z85 key named `what` (no key text in the error: it may be
/// a secret).
fn decode_key(text: &str, what: &str) -> Result<[u8; 32]> {
    zmq::z85_decode(text.trim())
        .ok()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "zmq: {what} is not a CURVE key (40 characters of Z85, as `proxystore keygen` prints)"
            ))
        })
}

/// A layer's CURVE settings.
#[derive(Clone)]
pub(crate) struct Curve {
    mode: CurveMode,
    server_public: Option<[u8; 32]>,
    /// From the environment only.
    server_secret: Option<[u8; 32]>,
    /// This process's client key pair, made when a connection first
    /// needs it.
    client: std::sync::Arc<std::sync::OnceLock<Result<zmq::CurveKeyPair, String>>>,
    /// Why the environment's keys could not be read (a layer built by
    /// [`Default`] cannot fail; its first bind or connect does).
    broken: Option<String>,
}

impl fmt::Debug for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Curve")
            .field("mode", &self.mode)
            .field("server_key", &self.server_public.is_some())
            .field("secret_key", &self.server_secret.map(|_| "<set>"))
            .finish()
    }
}

impl Default for Curve {
    /// Auto, with the keys in the environment. Malformed keys there make
    /// every bind and connect fail with the reason (never plain text in
    /// their place).
    fn default() -> Self {
        Curve::from_options(&BTreeMap::new()).unwrap_or_else(|e| Curve {
            mode: CurveMode::On,
            server_public: None,
            server_secret: None,
            client: Default::default(),
            broken: Some(e.to_string()),
        })
    }
}

impl Curve {
    /// Settings from the connector's options `curve` and
    /// `curve_server_key` and the environment. A secret key in the
    /// options is refused: it must never travel in a config.
    pub(crate) fn from_options(options: &BTreeMap<String, String>) -> Result<Curve> {
        for name in options.keys() {
            if name.starts_with("curve") && name != MODE_OPTION && name != SERVER_KEY_OPTION {
                let why = if name.contains("secret") {
                    format!("a CURVE secret key is read from {SECRET_KEY_ENV} only, never from a config (configs travel in proxies)")
                } else {
                    format!("unknown option (the CURVE options are {MODE_OPTION} and {SERVER_KEY_OPTION})")
                };
                return Err(Error::Config(format!("zmq: option '{name}': {why}")));
            }
        }
        let mode = match options.get(MODE_OPTION).map(|m| m.trim()) {
            None | Some("auto") => CurveMode::Auto,
            Some("on") => CurveMode::On,
            Some("off") => CurveMode::Off,
            Some(other) => {
                return Err(Error::Config(format!(
                    "zmq: option curve='{other}' is not auto, on or off"
                )))
            }
        };
        let server_public = match options.get(SERVER_KEY_OPTION) {
            Some(k) => Some(decode_key(k, "option curve_server_key")?),
            None => env_key(SERVER_KEY_ENV)?,
        };
        let server_secret = env_key(SECRET_KEY_ENV)?;
        if mode == CurveMode::On && server_public.is_none() {
            return Err(Error::Config(format!(
                "zmq: curve=on needs the job's public key: set {SERVER_KEY_ENV} or option {SERVER_KEY_OPTION}"
            )));
        }
        Ok(Curve {
            mode,
            server_public,
            server_secret,
            client: Default::default(),
            broken: None,
        })
    }

    /// The options that rebuild these settings elsewhere: the mode if not
    /// `auto`, and the public key. Never the secret key.
    pub(crate) fn public_options(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self.mode {
            CurveMode::Auto => {}
            CurveMode::On => out.push((MODE_OPTION, "on".to_string())),
            CurveMode::Off => out.push((MODE_OPTION, "off".to_string())),
        }
        if let Some(k) = self.server_public.as_ref().and_then(|k| z85(k).ok()) {
            out.push((SERVER_KEY_OPTION, k));
        }
        out
    }

    fn check(&self) -> Result<()> {
        match &self.broken {
            Some(reason) => Err(Error::Config(reason.clone())),
            None => Ok(()),
        }
    }

    /// Whether connections to or from `endpoint` use CURVE.
    pub(crate) fn applies_to(&self, endpoint: &str) -> bool {
        match self.mode {
            CurveMode::Off => false,
            CurveMode::On => true,
            CurveMode::Auto => self.server_public.is_some() && !is_local_endpoint(endpoint),
        }
    }

    /// Makes `socket` (a data server's, about to bind `endpoint`) a CURVE
    /// server if CURVE applies there.
    pub(crate) fn secure_server(&self, socket: &zmq::Socket, endpoint: &str) -> Result<bool> {
        self.check()?;
        if !self.applies_to(endpoint) {
            return Ok(false);
        }
        let secret = self.server_secret.ok_or_else(|| {
            Error::Config(format!(
                "zmq: serving on {endpoint} with CURVE needs the job's secret key in {SECRET_KEY_ENV} \
                 (or option curve=off to serve in clear text)"
            ))
        })?;
        let set = |r: zmq::Result<()>| {
            r.map_err(|e| Error::Config(format!("zmq: cannot set up CURVE on {endpoint}: {e}")))
        };
        set(socket.set_curve_server(true))?;
        set(socket.set_curve_secretkey(&secret))?;
        Ok(true)
    }

    /// Makes `socket` (a client about to connect to `address`) a CURVE
    /// client of the job's server key if CURVE applies there.
    pub(crate) fn secure_client(&self, socket: &zmq::Socket, address: &str) -> Result<bool> {
        self.check()?;
        if !self.applies_to(address) {
            return Ok(false);
        }
        let Some(server) = self.server_public else {
            return Ok(false);
        };
        let pair = self
            .client
            .get_or_init(|| zmq::CurveKeyPair::new().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Transport {
                connector: "zmq".into(),
                source: format!("generating a CURVE client key pair: {e}").into(),
            })?;
        let set = |r: zmq::Result<()>| {
            r.map_err(|e| Error::Config(format!("zmq: cannot set up CURVE to {address}: {e}")))
        };
        set(socket.set_curve_serverkey(&server))?;
        set(socket.set_curve_publickey(&pair.public_key))?;
        set(socket.set_curve_secretkey(&pair.secret_key))?;
        Ok(true)
    }
}

fn env_key(var: &str) -> Result<Option<[u8; 32]>> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => decode_key(&v, var).map(Some),
        _ => Ok(None),
    }
}

/// Watches one client connection's security handshake (libzmq's socket
/// monitor), so a key mismatch is a clear [`Error::Unauthorized`] at the
/// first request instead of a silent timeout: libzmq itself only retries.
pub(crate) struct Handshake {
    monitor: zmq::Socket,
    curve: bool,
}

/// Handshake events the monitor reports.
const HANDSHAKE_EVENTS: i32 = (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
    | (zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32)
    | (zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32)
    | (zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32);

impl Handshake {
    /// Starts watching `socket` (before it connects); `curve`: whether
    /// this side uses CURVE (for the error's advice).
    pub(crate) fn watch(
        context: &zmq::Context,
        socket: &zmq::Socket,
        curve: bool,
    ) -> zmq::Result<Handshake> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let endpoint = format!(
            "inproc://proxystore-zmq-handshake-{}-{n}",
            std::process::id()
        );
        socket.monitor(&endpoint, HANDSHAKE_EVENTS)?;
        let monitor = context.socket(zmq::PAIR)?;
        monitor.set_linger(0)?;
        monitor.connect(&endpoint)?;
        Ok(Handshake { monitor, curve })
    }

    /// Waits up to `timeout` for the handshake's outcome: `Ok(true)` once
    /// it succeeded (then [`Handshake::stop`]), `Ok(false)` if none came
    /// in time (the request's own timeout decides), and
    /// [`Error::Unauthorized`] if it failed.
    pub(crate) fn check(&mut self, timeout: std::time::Duration, address: &str) -> Result<bool> {
        let wait = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let event = match self.next_event(wait) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(false),
            Err(e) => {
                tracing::debug!(error = %e, %address, "zmq handshake monitor failed");
                return Ok(false);
            }
        };
        if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED {
            return Ok(true);
        }
        let advice = if self.curve {
            format!("the server's secret key does not match the public key this reader was given ({SERVER_KEY_ENV} or option {SERVER_KEY_OPTION}), or the server does not use CURVE")
        } else {
            format!("the server requires CURVE: give this reader the job's public key ({SERVER_KEY_ENV} or option {SERVER_KEY_OPTION})")
        };
        Err(Error::Unauthorized {
            connector: "zmq".into(),
            address: address.to_string(),
            reason: format!("security handshake failed ({event:?}): {advice}"),
        })
    }

    /// Stops watching `socket`: its monitor and ours are closed, so a
    /// pooled connection costs no descriptors for it once it is up.
    pub(crate) fn stop(self, socket: &mut zmq::Socket) {
        // SAFETY: `socket` is a live socket this thread owns; a null
        // endpoint with no events is libzmq's documented way to stop
        // monitoring it.
        let rc = unsafe { zmq_sys::zmq_socket_monitor(socket.as_mut_ptr(), std::ptr::null(), 0) };
        if rc != 0 {
            tracing::debug!("zmq: could not stop a handshake monitor");
        }
        drop(self.monitor);
    }

    /// The next event, waiting up to `wait_ms` (0: only one already there).
    fn next_event(&self, wait_ms: i32) -> zmq::Result<Option<zmq::SocketEvent>> {
        if wait_ms > 0 {
            let mut items = [self.monitor.as_poll_item(zmq::POLLIN)];
            if zmq::poll(&mut items, i64::from(wait_ms))? == 0 {
                return Ok(None);
            }
        }
        let head = match self.monitor.recv_msg(zmq::DONTWAIT) {
            Ok(m) => m,
            Err(zmq::Error::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The event's second part names the endpoint; not needed.
        while self.monitor.get_rcvmore()? {
            drop(self.monitor.recv_msg(zmq::DONTWAIT)?);
        }
        let id = head
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(zmq::Error::EPROTO)?;
        Ok(Some(zmq::SocketEvent::from_raw(id)))
    }
}
