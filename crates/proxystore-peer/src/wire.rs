//! The peer-to-peer wire format: one request/response vocabulary that every
//! network transport (ZeroMQ frames, UCX and libfabric messages) carries.
//!
//! A message is a list of frames. Frame 0 is the *head*; each item that
//! carries data (a put request's objects, a get response's objects) adds one
//! frame of exactly its length, in item order, so payloads travel without
//! being copied into the head.
//!
//! Head layout (all integers little endian):
//!
//! | offset | size | field |
//! |--:|--:|:--|
//! | 0 | 4 | magic `PXSW` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | op: 1 put, 2 get, 3 exists, 4 evict, 5 ping; `| 0x80` in a response |
//! | 6 | 1 | status (responses; 0 in requests) |
//! | 7 | 1 | flags: bit 0 [`ACCEPTS_REMOTE`] in a get request; 0 elsewhere |
//! | 8 | 8 | request id, echoed by the response |
//! | 16 | 4 | item count |
//! | 20 | 4 | aux length: the auth token in a request, the error text in a response |
//! | 24 | aux | aux bytes |
//! | .. | 24 × count | items: object id (16) + word (8) |
//!
//! An item's word is the payload length for data items, `u64::MAX` for an
//! absent object in a get response, 0/1 in an exists response, 0 elsewhere.
//! Every length is checked against [`Limits`] before anything is allocated.

use bytes::{BufMut, Bytes, BytesMut};

use proxystore_core::ObjectId;

/// A message on the wire: frame 0 is the head, then payload frames.
pub type Frames = Vec<Bytes>;

const MAGIC: [u8; 4] = *b"PXSW";
/// Wire format version this build speaks.
pub const VERSION: u8 = 1;
const HEAD_LEN: usize = 24;
const ITEM_LEN: usize = 24;
const ABSENT: u64 = u64::MAX;
const RESPONSE: u8 = 0x80;
/// Item word bit: the frame is a remote descriptor, not the object.
const REMOTE: u64 = 1 << 63;
/// Request flag: the client can read objects one-sided from a remote
/// descriptor ([`Value::Remote`]) instead of receiving their bytes.
pub const ACCEPTS_REMOTE: u8 = 1;

/// Operation of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Store objects (items carry data).
    Put = 1,
    /// Fetch objects.
    Get = 2,
    /// Ask whether objects exist.
    Exists = 3,
    /// Remove objects.
    Evict = 4,
    /// Liveness check, no items.
    Ping = 5,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Put,
            2 => Op::Get,
            3 => Op::Exists,
            4 => Op::Evict,
            5 => Op::Ping,
            _ => return None,
        })
    }
}

/// Outcome carried by a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Done; items hold the results.
    Ok = 0,
    /// The request was malformed; aux says how.
    BadRequest = 1,
    /// The auth token did not match the server's secret.
    Unauthorized = 2,
    /// An object or the message exceeded the server's limits.
    TooLarge = 3,
    /// The server does not speak this wire version.
    BadVersion = 4,
    /// The server failed for another reason; aux says how.
    Internal = 5,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Ok,
            1 => Status::BadRequest,
            2 => Status::Unauthorized,
            3 => Status::TooLarge,
            4 => Status::BadVersion,
            _ => Status::Internal,
        }
    }
}

/// What one item of a message holds; which variant is legal is fixed by
/// the op and the direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Only the object id (requests other than put; put/evict responses).
    Id,
    /// The object's bytes (put requests, get responses).
    Data(Bytes),
    /// No such object (get responses).
    Absent,
    /// Whether the object exists (exists responses).
    Flag(bool),
    /// Where to read the object one-sided (get responses to requests with
    /// [`ACCEPTS_REMOTE`]); the format is the transport's.
    Remote(Bytes),
}

/// One object named in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The object.
    pub id: ObjectId,
    /// What the message says about it.
    pub value: Value,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The operation.
    pub op: Op,
    /// Whether this is a response.
    pub response: bool,
    /// Outcome (responses).
    pub status: Status,
    /// Chosen by the client, echoed by the server.
    pub request_id: u64,
    /// Auth token (requests) or error text (responses).
    pub aux: Bytes,
    /// Request flags ([`ACCEPTS_REMOTE`]); 0 in responses.
    pub flags: u8,
    /// The objects.
    pub items: Vec<Item>,
}

impl Message {
    /// A request.
    pub fn request(op: Op, request_id: u64, auth: Bytes, items: Vec<Item>) -> Message {
        Message {
            op,
            response: false,
            status: Status::Ok,
            request_id,
            aux: auth,
            flags: 0,
            items,
        }
    }

    /// A successful response to `request_id`.
    pub fn ok(op: Op, request_id: u64, items: Vec<Item>) -> Message {
        Message {
            op,
            response: true,
            status: Status::Ok,
            request_id,
            aux: Bytes::new(),
            flags: 0,
            items,
        }
    }

    /// A failed response carrying a reason.
    pub fn error(op: Op, request_id: u64, status: Status, reason: &str) -> Message {
        Message {
            op,
            response: true,
            status,
            request_id,
            aux: Bytes::copy_from_slice(reason.as_bytes()),
            flags: 0,
            items: Vec::new(),
        }
    }

    /// The frames of this message: the head, then one per data item.
    pub fn encode(&self) -> Vec<Bytes> {
        let mut head =
            BytesMut::with_capacity(HEAD_LEN + self.aux.len() + ITEM_LEN * self.items.len());
        head.put_slice(&MAGIC);
        head.put_u8(VERSION);
        head.put_u8(self.op as u8 | if self.response { RESPONSE } else { 0 });
        head.put_u8(self.status as u8);
        head.put_u8(self.flags);
        head.put_u64_le(self.request_id);
        head.put_u32_le(self.items.len() as u32);
        head.put_u32_le(self.aux.len() as u32);
        head.put_slice(&self.aux);
        let mut frames = vec![Bytes::new()];
        for item in &self.items {
            head.put_u128_le(item.id.as_u128());
            let word = match &item.value {
                Value::Id => 0,
                Value::Absent => ABSENT,
                Value::Flag(f) => u64::from(*f),
                Value::Data(d) => {
                    frames.push(d.clone());
                    d.len() as u64
                }
                Value::Remote(desc) => {
                    frames.push(desc.clone());
                    REMOTE | desc.len() as u64
                }
            };
            head.put_u64_le(word);
        }
        frames[0] = head.freeze();
        frames
    }

    /// Parses frames, checking every count and length against `limits`
    /// before allocating.
    pub fn decode(mut frames: Vec<Bytes>, limits: &Limits) -> Result<Message, WireError> {
        if frames.is_empty() {
            return Err(WireError::NoFrames);
        }
        let head = std::mem::take(&mut frames[0]);
        let fixed = parse_head(&head)?;
        let count = fixed.count as usize;
        if fixed.count > limits.max_items {
            return Err(WireError::TooManyItems {
                count: fixed.count,
                limit: limits.max_items,
            });
        }
        if fixed.aux_len > limits.max_aux {
            return Err(WireError::TooLarge {
                what: "aux field",
                size: fixed.aux_len.into(),
                limit: limits.max_aux.into(),
            });
        }
        let expected = HEAD_LEN + fixed.aux_len as usize + ITEM_LEN * count;
        if head.len() != expected {
            return Err(WireError::HeadLength {
                expected,
                actual: head.len(),
            });
        }
        let aux = head.slice(HEAD_LEN..HEAD_LEN + fixed.aux_len as usize);
        let mut payloads = frames.into_iter().skip(1);
        let carries_data = matches!(
            (fixed.op, fixed.response),
            (Op::Put, false) | (Op::Get, true)
        );
        let mut items = Vec::with_capacity(count);
        let mut offset = HEAD_LEN + fixed.aux_len as usize;
        for _ in 0..count {
            let id = u128::from_le_bytes(head[offset..offset + 16].try_into().unwrap_or([0; 16]));
            let word =
                u64::from_le_bytes(head[offset + 16..offset + 24].try_into().unwrap_or([0; 8]));
            offset += ITEM_LEN;
            let value = if !fixed.response || fixed.status != Status::Ok {
                if carries_data {
                    Value::Data(data_item(word, &mut payloads, limits)?)
                } else {
                    Value::Id
                }
            } else {
                match fixed.op {
                    Op::Get if word == ABSENT => Value::Absent,
                    Op::Get if word & REMOTE != 0 => {
                        let len = word & !REMOTE;
                        if len > u64::from(limits.max_aux) {
                            return Err(WireError::TooLarge {
                                what: "remote descriptor",
                                size: len,
                                limit: limits.max_aux.into(),
                            });
                        }
                        Value::Remote(data_item(len, &mut payloads, limits)?)
                    }
                    Op::Get => Value::Data(data_item(word, &mut payloads, limits)?),
                    Op::Exists => match word {
                        0 => Value::Flag(false),
                        1 => Value::Flag(true),
                        other => return Err(WireError::BadFlag(other)),
                    },
                    _ => Value::Id,
                }
            };
            items.push(Item {
                id: ObjectId::from_u128(id),
                value,
            });
        }
        let extra = payloads.count();
        if extra > 0 {
            return Err(WireError::ExtraFrames(extra));
        }
        Ok(Message {
            op: fixed.op,
            response: fixed.response,
            status: fixed.status,
            request_id: fixed.request_id,
            aux,
            flags: fixed.flags,
            items,
        })
    }
}

/// The fixed part of a head, enough to answer even a malformed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// Operation.
    pub op: Op,
    /// Whether it is a response.
    pub response: bool,
    /// Status byte.
    pub status: Status,
    /// Request id.
    pub request_id: u64,
    count: u32,
    aux_len: u32,
    flags: u8,
}

/// Reads the fixed 24 bytes of a head (magic, version, op, ids, counts).
pub fn parse_head(head: &[u8]) -> Result<HeadInfo, WireError> {
    if head.len() < HEAD_LEN {
        return Err(WireError::Short(head.len()));
    }
    if head[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let op_byte = head[5];
    let op = Op::from_u8(op_byte & !RESPONSE).ok_or(WireError::BadOp(op_byte))?;
    let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap_or([0; 4]));
    let info = HeadInfo {
        op,
        response: op_byte & RESPONSE != 0,
        status: Status::from_u8(head[6]),
        request_id: word(8),
        count: half(16),
        aux_len: half(20),
        flags: head[7],
    };
    if head[4] != VERSION {
        return Err(WireError::BadVersion {
            version: head[4],
            info,
        });
    }
    Ok(info)
}

/// The next payload frame, checked to be `len` bytes within the limits.
fn data_item(
    len: u64,
    payloads: &mut impl Iterator<Item = Bytes>,
    limits: &Limits,
) -> Result<Bytes, WireError> {
    if len > limits.max_object {
        return Err(WireError::TooLarge {
            what: "object",
            size: len,
            limit: limits.max_object,
        });
    }
    let frame = payloads.next().ok_or(WireError::MissingFrame)?;
    if frame.len() as u64 != len {
        return Err(WireError::FrameLength {
            expected: len,
            actual: frame.len() as u64,
        });
    }
    Ok(frame)
}

/// Bounds a peer enforces on what it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest object, in bytes.
    pub max_object: u64,
    /// Most items in one message.
    pub max_items: u32,
    /// Largest aux field (auth token, error text), in bytes.
    pub max_aux: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object: 4 << 30,
            max_items: 1 << 20,
            max_aux: 64 << 10,
        }
    }
}

impl Limits {
    /// The largest single frame a message within these limits can hold:
    /// what transports pass to their own size guard (ZeroMQ's MAXMSGSIZE).
    pub fn max_frame(&self) -> u64 {
        let head =
            HEAD_LEN as u64 + u64::from(self.max_aux) + ITEM_LEN as u64 * u64::from(self.max_items);
        head.max(self.max_object)
    }
}

/// Why frames could not be read as a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// No frames at all.
    #[error("empty message")]
    NoFrames,
    /// Head shorter than its fixed part.
    #[error("head of {0} bytes is shorter than the 24-byte fixed part")]
    Short(usize),
    /// Not a proxystore message.
    #[error("bad magic: not a proxystore peer message")]
    BadMagic,
    /// Another wire version.
    #[error("wire version {version} (this build speaks {VERSION})")]
    BadVersion {
        /// Version received.
        version: u8,
        /// The rest of the fixed head, to answer with.
        info: HeadInfo,
    },
    /// Unknown op byte.
    #[error("unknown op byte {0:#x}")]
    BadOp(u8),
    /// Item count over the limit.
    #[error("{count} items exceed the limit of {limit}")]
    TooManyItems {
        /// Count received.
        count: u32,
        /// Limit.
        limit: u32,
    },
    /// A length over a limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Head length disagrees with its counts.
    #[error("head is {actual} bytes but its counts say {expected}")]
    HeadLength {
        /// From the counts.
        expected: usize,
        /// Received.
        actual: usize,
    },
    /// Fewer payload frames than data items.
    #[error("a data item has no payload frame (truncated message)")]
    MissingFrame,
    /// A payload frame of the wrong length.
    #[error("payload frame is {actual} bytes but its item says {expected}")]
    FrameLength {
        /// From the item.
        expected: u64,
        /// Received.
        actual: u64,
    },
    /// More payload frames than data items.
    #[error("{0} payload frames beyond the items")]
    ExtraFrames(usize),
    /// An exists flag other than 0 or 1.
    #[error("exists flag {0} is neither 0 nor 1")]
    BadFlag(u64),
}

#[cfg(test)]
mod tests;
