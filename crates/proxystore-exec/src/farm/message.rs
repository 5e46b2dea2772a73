//! The farm's control messages and their encoding: a fixed 32-byte header
//! and a body, sent as one frame of two parts (the body is never joined to
//! the header, so a payload sent by value is written from where it is).
//!
//! Header, little-endian: magic `PSFM` (4 bytes), kind (1), via (1), two
//! zero bytes, task id (8), size (8), task milliseconds (4), four zero
//! bytes. The body is the payload itself (by value), a bincode-encoded
//! [`ProxyFactory`] (by proxy), or UTF-8 text (a failure's reason, the
//! address a scheduler listens on).

use bytes::Bytes;
use proxystore_core::{Error, ProxyFactory, Result};

use crate::channel::FrameStream;

const MAGIC: &[u8; 4] = b"PSFM";
/// Length of the fixed header in front of every body.
pub const HEADER_LEN: usize = 32;

const TASK: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;
const SHUTDOWN: u8 = 4;
const LISTENING: u8 = 5;
const READY: u8 = 6;

const VIA_NONE: u8 = 0;
const VIA_VALUE: u8 = 1;
const VIA_PROXY: u8 = 2;

/// How a task's input or result travels.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// The bytes themselves, inside the message (relayed by the scheduler).
    Value(Bytes),
    /// A reference to the bytes in a store; the receiver resolves it.
    Proxy(ProxyFactory),
}

/// How long the worker spent on a task's data, as it reports in
/// [`Message::Done`] (microseconds, saturating): what a run's breakdown
/// needs to tell the data path from the control path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerSteps {
    /// Resolving and checking the input.
    pub fetch_us: u32,
    /// Putting the result (zero for a result sent by value).
    pub put_us: u32,
}

impl WorkerSteps {
    /// Microseconds of `d`, saturating at `u32::MAX` (71 minutes).
    pub fn micros(d: std::time::Duration) -> u32 {
        u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
    }
}

/// One control message between client, scheduler and worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Client to worker: run task `id` on an input of `size` bytes, taking
    /// `task_ms` milliseconds, and answer with a result of the same size
    /// sent the same way as the input.
    Task {
        /// Task id, echoed by the answer.
        id: u64,
        /// How long the task runs, in milliseconds.
        task_ms: u32,
        /// Length of the input in bytes.
        size: u64,
        /// The input.
        payload: Payload,
    },
    /// Worker to client: task `id` finished with a result of `size` bytes.
    Done {
        /// The task's id.
        id: u64,
        /// Length of the result in bytes.
        size: u64,
        /// The result.
        payload: Payload,
        /// The worker's time on the input and the result.
        steps: WorkerSteps,
    },
    /// Worker to client: task `id` failed.
    Failed {
        /// The task's id.
        id: u64,
        /// Why, as the worker said it.
        reason: String,
    },
    /// Client to scheduler and worker: stop.
    Shutdown,
    /// Scheduler to client: the address workers connect to.
    Listening(String),
    /// Scheduler to client: a worker is connected; tasks may be sent.
    Ready,
}

/// A frame as the scheduler sees it: its header only ([`Message::peek`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// A task, running `task_ms` milliseconds.
    Task {
        /// How long the task runs, in milliseconds.
        task_ms: u32,
    },
    /// A task's answer: done or failed.
    Answer,
    /// The order to stop.
    Shutdown,
    /// Any other kind, by name.
    Other(&'static str),
}

impl Header {
    /// A short name of the frame's kind, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Header::Task { .. } => "task",
            Header::Answer => "answer",
            Header::Shutdown => "shutdown",
            Header::Other(name) => name,
        }
    }
}

/// A decoding failure naming what is wrong with the frame.
fn malformed(reason: impl Into<String>) -> Error {
    Error::Codec {
        codec: "farm",
        op: "decode",
        type_name: "farm::Message",
        reason: reason.into(),
    }
}

impl Message {
    /// A short name of the message's kind, for errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Task { .. } => "task",
            Message::Done { .. } => "done",
            Message::Failed { .. } => "failed",
            Message::Shutdown => "shutdown",
            Message::Listening(_) => "listening",
            Message::Ready => "ready",
        }
    }

    /// The header and the body of the message (a payload sent by value is
    /// the body itself: a reference count, no copy).
    pub fn encode(&self) -> Result<([u8; HEADER_LEN], Bytes)> {
        let mut extra = 0u32;
        let (kind, via, id, size, task_ms, body) = match self {
            Message::Task {
                id,
                task_ms,
                size,
                payload,
            } => {
                let (via, body) = encode_payload(payload)?;
                (TASK, via, *id, *size, *task_ms, body)
            }
            Message::Done {
                id,
                size,
                payload,
                steps,
            } => {
                let (via, body) = encode_payload(payload)?;
                // A Done has no task duration: its slot carries the fetch.
                extra = steps.put_us;
                (DONE, via, *id, *size, steps.fetch_us, body)
            }
            Message::Failed { id, reason } => (
                FAILED,
                VIA_NONE,
                *id,
                0,
                0,
                Bytes::copy_from_slice(reason.as_bytes()),
            ),
            Message::Shutdown => (SHUTDOWN, VIA_NONE, 0, 0, 0, Bytes::new()),
            Message::Listening(addr) => (
                LISTENING,
                VIA_NONE,
                0,
                0,
                0,
                Bytes::copy_from_slice(addr.as_bytes()),
            ),
            Message::Ready => (READY, VIA_NONE, 0, 0, 0, Bytes::new()),
        };
        let mut head = [0u8; HEADER_LEN];
        head[..4].copy_from_slice(MAGIC);
        head[4] = kind;
        head[5] = via;
        head[8..16].copy_from_slice(&id.to_le_bytes());
        head[16..24].copy_from_slice(&size.to_le_bytes());
        head[24..28].copy_from_slice(&task_ms.to_le_bytes());
        head[28..32].copy_from_slice(&extra.to_le_bytes());
        Ok((head, body))
    }

    /// Sends the message as one frame of two parts.
    pub fn send(&self, chan: &mut FrameStream) -> Result<()> {
        let (head, body) = self.encode()?;
        chan.send(&[&head, &body])
    }

    /// Decodes a frame; the body of a payload sent by value is a slice of
    /// `frame` (no copy). A frame that is short, of an unknown kind, or
    /// whose body does not match its header is an [`Error::Codec`].
    pub fn decode(frame: Bytes) -> Result<Message> {
        check_header(&frame)?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&frame[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (kind, via, id, size) = (frame[4], frame[5], u64_at(8), u64_at(16));
        let (task_ms, extra) = (u32_at(&frame, 24), u32_at(&frame, 28));
        let body = frame.slice(HEADER_LEN..);
        let text = |body: &Bytes, what: &str| {
            std::str::from_utf8(body)
                .map(str::to_owned)
                .map_err(|_| malformed(format!("the {what} is not UTF-8")))
        };
        Ok(match kind {
            TASK => Message::Task {
                id,
                task_ms,
                size,
                payload: decode_payload(via, size, body)?,
            },
            DONE => Message::Done {
                id,
                size,
                payload: decode_payload(via, size, body)?,
                steps: WorkerSteps {
                    fetch_us: task_ms,
                    put_us: extra,
                },
            },
            FAILED => Message::Failed {
                id,
                reason: text(&body, "failure's reason")?,
            },
            SHUTDOWN => Message::Shutdown,
            LISTENING => Message::Listening(text(&body, "scheduler's address")?),
            READY => Message::Ready,
            other => return Err(malformed(format!("unknown message kind {other}"))),
        })
    }

    /// Reads only the header of a frame: what the scheduler needs to relay
    /// it (the body, a payload or a proxy, is passed on unread, as Dask's
    /// scheduler passes a task's serialized arguments). A frame too short
    /// for the header, without the magic, or of an unknown kind is an
    /// [`Error::Codec`]; the receiver's [`decode`](Self::decode) checks the
    /// body.
    pub fn peek(frame: &[u8]) -> Result<Header> {
        check_header(frame)?;
        Ok(match frame[4] {
            TASK => Header::Task {
                task_ms: u32_at(frame, 24),
            },
            DONE | FAILED => Header::Answer,
            SHUTDOWN => Header::Shutdown,
            LISTENING => Header::Other("listening"),
            READY => Header::Other("ready"),
            other => return Err(malformed(format!("unknown message kind {other}"))),
        })
    }

    /// Receives and decodes the next message; `Ok(None)` when the peer
    /// closed the channel between frames.
    pub fn recv(chan: &mut FrameStream) -> Result<Option<Message>> {
        chan.recv()?.map(Message::decode).transpose()
    }
}

/// The little-endian `u32` at `at` of a checked header.
fn u32_at(frame: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&frame[at..at + 4]);
    u32::from_le_bytes(b)
}

/// Checks that `frame` holds a header with the farm's magic.
fn check_header(frame: &[u8]) -> Result<()> {
    if frame.len() < HEADER_LEN {
        return Err(malformed(format!(
            "a frame of {} bytes is shorter than the {HEADER_LEN}-byte header",
            frame.len()
        )));
    }
    if &frame[..4] != MAGIC {
        return Err(malformed(format!(
            "the frame starts with {:02x?}, not the farm's magic {MAGIC:?}",
            &frame[..4]
        )));
    }
    Ok(())
}

fn encode_payload(payload: &Payload) -> Result<(u8, Bytes)> {
    match payload {
        Payload::Value(bytes) => Ok((VIA_VALUE, bytes.clone())),
        Payload::Proxy(factory) => bincode::serialize(factory)
            .map(|b| (VIA_PROXY, Bytes::from(b)))
            .map_err(|e| Error::Codec {
                codec: "bincode",
                op: "encode",
                type_name: "ProxyFactory",
                reason: e.to_string(),
            }),
    }
}

fn decode_payload(via: u8, size: u64, body: Bytes) -> Result<Payload> {
    match via {
        VIA_VALUE if body.len() as u64 == size => Ok(Payload::Value(body)),
        VIA_VALUE => Err(malformed(format!(
            "the header announces {size} payload bytes but the body has {}",
            body.len()
        ))),
        VIA_PROXY => bincode::deserialize(&body)
            .map(Payload::Proxy)
            .map_err(|e| malformed(format!("the proxy in the body does not decode: {e}"))),
        other => Err(malformed(format!("unknown payload mode {other}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proxystore_core::{Key, LocalConnector, Store};

    fn frame(m: &Message) -> Bytes {
        let (head, body) = m.encode().unwrap();
        let mut all = head.to_vec();
        all.extend_from_slice(&body);
        Bytes::from(all)
    }

    fn factory() -> ProxyFactory {
        let store = Store::new("farm-message-test", LocalConnector::new());
        let key: Key = store.put_bytes(Bytes::from_static(b"x")).unwrap();
        ProxyFactory::new(store.config(), key)
    }

    #[test]
    fn every_message_round_trips() {
        let messages = [
            Message::Task {
                id: 7,
                task_ms: 10,
                size: 5,
                payload: Payload::Value(Bytes::from_static(b"hello")),
            },
            Message::Task {
                id: u64::MAX,
                task_ms: 0,
                size: 1_000_000,
                payload: Payload::Proxy(factory()),
            },
            Message::Done {
                id: 3,
                size: 0,
                payload: Payload::Value(Bytes::new()),
                steps: WorkerSteps::default(),
            },
            Message::Done {
                id: 4,
                size: 9,
                payload: Payload::Proxy(factory()),
                steps: WorkerSteps {
                    fetch_us: 250,
                    put_us: u32::MAX,
                },
            },
            Message::Failed {
                id: 5,
                reason: "input corrupt at byte 4096".into(),
            },
            Message::Shutdown,
            Message::Listening("127.0.0.1:4000".into()),
            Message::Ready,
        ];
        for m in messages {
            assert_eq!(Message::decode(frame(&m)).unwrap(), m, "{}", m.kind());
        }
    }

    #[test]
    fn peek_reads_the_kind_and_duration_without_the_body() {
        let task = frame(&Message::Task {
            id: 2,
            task_ms: 15,
            size: 5,
            payload: Payload::Proxy(factory()),
        });
        assert_eq!(Message::peek(&task).unwrap(), Header::Task { task_ms: 15 });
        // A body that would not decode is not the scheduler's business.
        assert_eq!(
            Message::peek(&task[..HEADER_LEN + 1]).unwrap(),
            Header::Task { task_ms: 15 }
        );
        let answers = [
            Message::Done {
                id: 2,
                size: 0,
                payload: Payload::Value(Bytes::new()),
                steps: WorkerSteps::default(),
            },
            Message::Failed {
                id: 2,
                reason: "x".into(),
            },
        ];
        for m in &answers {
            assert_eq!(Message::peek(&frame(m)).unwrap(), Header::Answer);
        }
        assert_eq!(
            Message::peek(&frame(&Message::Shutdown)).unwrap(),
            Header::Shutdown
        );
        assert_eq!(
            Message::peek(&frame(&Message::Ready)).unwrap().kind(),
            "ready"
        );
    }

    #[test]
    fn a_value_payload_is_the_frame_itself_not_a_copy() {
        let m = Message::Done {
            id: 1,
            size: 4,
            payload: Payload::Value(Bytes::from_static(b"abcd")),
            steps: WorkerSteps::default(),
        };
        let f = frame(&m);
        match Message::decode(f.clone()).unwrap() {
            Message::Done {
                payload: Payload::Value(b),
                ..
            } => assert_eq!(b.as_ptr(), f[HEADER_LEN..].as_ptr()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_and_garbage_frames_are_typed_errors() {
        let task = frame(&Message::Task {
            id: 1,
            task_ms: 0,
            size: 5,
            payload: Payload::Value(Bytes::from_static(b"hello")),
        });
        let proxy = frame(&Message::Task {
            id: 1,
            task_ms: 0,
            size: 5,
            payload: Payload::Proxy(factory()),
        });
        let mut unknown_kind = task.to_vec();
        unknown_kind[4] = 99;
        let mut unknown_via = task.to_vec();
        unknown_via[5] = 9;
        let mut bad_text = frame(&Message::Failed {
            id: 1,
            reason: "ab".into(),
        })
        .to_vec();
        bad_text[HEADER_LEN] = 0xff;
        let cases: Vec<(Bytes, &str)> = vec![
            (Bytes::new(), "shorter than"),
            (task.slice(..20), "shorter than"),
            (Bytes::from_static(&[0u8; 40]), "magic"),
            (task.slice(..task.len() - 1), "body has 4"),
            (proxy.slice(..proxy.len() - 3), "does not decode"),
            (Bytes::from(unknown_kind), "unknown message kind 99"),
            (Bytes::from(unknown_via), "unknown payload mode 9"),
            (Bytes::from(bad_text), "not UTF-8"),
        ];
        for (bytes, needle) in cases {
            // The header's own faults are the scheduler's errors too.
            if bytes.len() < HEADER_LEN
                || needle == "magic"
                || needle.starts_with("unknown message")
            {
                let e = Message::peek(&bytes).unwrap_err();
                assert!(e.to_string().contains(needle), "peek: {e} lacks {needle}");
            }
            let e = Message::decode(bytes).unwrap_err();
            assert!(matches!(e, Error::Codec { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{e} lacks {needle}");
        }
    }
}
