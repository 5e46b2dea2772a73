//! What a data server does with a request, whatever carried it.

use std::sync::Arc;

use bytes::Bytes;
use proxystore_core::ObjectTable;

use crate::rma::Expose;
use crate::served::Served;
use crate::wire::{
    parse_head, Frames, Item, Limits, Message, Op, Status, Value, WireError, ACCEPTS_REMOTE,
};

/// Answers requests from an object table. Malformed requests get an error
/// reply (or none, when not even the head can be read); they never stop the
/// server.
#[derive(Clone)]
pub struct Handler {
    served: Served,
    secret: Option<Bytes>,
    limits: Limits,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("limits", &self.limits)
            .field("one_sided", &self.served.exposures().is_some())
            .finish()
    }
}

impl Handler {
    /// A handler serving `table`. With a `secret`, requests whose auth
    /// token differs are refused.
    pub fn new(table: Arc<ObjectTable>, secret: Option<Bytes>, limits: Limits) -> Self {
        Handler::serving(Served::new(table, None), secret, limits)
    }

    pub(crate) fn serving(served: Served, secret: Option<Bytes>, limits: Limits) -> Self {
        Handler {
            served,
            secret,
            limits,
        }
    }

    /// Offers large objects as one-sided read descriptors (from
    /// `exposures`, see [`rma`](crate::rma)) to clients that accept them.
    pub fn with_exposures(mut self, exposures: Arc<dyn Expose>) -> Self {
        self.served = self.served.with_exposures(exposures);
        self
    }

    /// The registrations this handler offers descriptors from, if any.
    pub fn exposures(&self) -> Option<&Arc<dyn Expose>> {
        self.served.exposures()
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The reply to one request, or `None` if the frames are not a request
    /// at all (nothing to answer to).
    pub fn handle(&self, frames: Frames) -> Option<Frames> {
        let head_info = frames.first().and_then(|h| parse_head(h).ok());
        let request = match Message::decode(frames, &self.limits) {
            Ok(m) if !m.response => m,
            Ok(_) => return None,
            Err(WireError::BadVersion { info, .. }) => {
                let reason = format!(
                    "wire version not supported (this server speaks {})",
                    crate::wire::VERSION
                );
                return Some(
                    Message::error(info.op, info.request_id, Status::BadVersion, &reason).encode(),
                );
            }
            Err(e) => {
                let info = head_info?;
                let status = match e {
                    WireError::TooLarge { .. } | WireError::TooManyItems { .. } => Status::TooLarge,
                    _ => Status::BadRequest,
                };
                tracing::debug!(error = %e, "malformed request");
                return Some(
                    Message::error(info.op, info.request_id, status, &e.to_string()).encode(),
                );
            }
        };
        if !self.authorized(&request.aux) {
            return Some(
                Message::error(
                    request.op,
                    request.request_id,
                    Status::Unauthorized,
                    "auth token does not match the server's secret",
                )
                .encode(),
            );
        }
        Some(self.execute(request).encode())
    }

    fn authorized(&self, token: &[u8]) -> bool {
        match &self.secret {
            None => true,
            Some(secret) => constant_time_eq(secret, token),
        }
    }

    fn execute(&self, req: Message) -> Message {
        let items = req.items;
        let rid = req.request_id;
        let out: Vec<Item> = match req.op {
            Op::Put => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Data(data) = item.value else {
                        return Message::error(
                            req.op,
                            rid,
                            Status::BadRequest,
                            "put item without data",
                        );
                    };
                    self.served.insert(item.id, data);
                    out.push(Item {
                        id: item.id,
                        value: Value::Id,
                    });
                }
                out
            }
            Op::Get => {
                let exposures = self
                    .served
                    .exposures()
                    .filter(|_| req.flags & ACCEPTS_REMOTE != 0);
                items
                    .into_iter()
                    .map(|i| {
                        let value = match (self.served.get(i.id), exposures) {
                            (None, _) => Value::Absent,
                            (Some(d), Some(e)) => {
                                e.expose(&d).map_or(Value::Data(d), Value::Remote)
                            }
                            (Some(d), None) => Value::Data(d),
                        };
                        Item { id: i.id, value }
                    })
                    .collect()
            }
            Op::Exists => items
                .into_iter()
                .map(|i| Item {
                    id: i.id,
                    value: Value::Flag(self.served.contains(i.id)),
                })
                .collect(),
            Op::Evict => items
                .into_iter()
                .map(|i| {
                    self.served.remove(i.id);
                    Item {
                        id: i.id,
                        value: Value::Id,
                    }
                })
                .collect(),
            Op::Ping => Vec::new(),
        };
        Message::ok(req.op, rid, out)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxystore_core::ObjectId;

    fn handler(secret: Option<&'static [u8]>) -> Handler {
        Handler::new(
            Arc::new(ObjectTable::new()),
            secret.map(Bytes::from_static),
            Limits::default(),
        )
    }

    fn reply(h: &Handler, m: &Message) -> Message {
        Message::decode(h.handle(m.encode()).unwrap(), &Limits::default()).unwrap()
    }

    #[test]
    fn put_then_get_exists_evict() {
        let h = handler(None);
        let id = ObjectId::random();
        let put = Message::request(
            Op::Put,
            1,
            Bytes::new(),
            vec![Item {
                id,
                value: Value::Data(Bytes::from_static(b"v")),
            }],
        );
        assert_eq!(reply(&h, &put).status, Status::Ok);
        let get = Message::request(
            Op::Get,
            2,
            Bytes::new(),
            vec![Item {
                id,
                value: Value::Id,
            }],
        );
        assert_eq!(
            reply(&h, &get).items[0].value,
            Value::Data(Bytes::from_static(b"v"))
        );
        let evict = Message::request(
            Op::Evict,
            3,
            Bytes::new(),
            vec![Item {
                id,
                value: Value::Id,
            }],
        );
        assert_eq!(reply(&h, &evict).status, Status::Ok);
        let exists = Message::request(
            Op::Exists,
            4,
            Bytes::new(),
            vec![Item {
                id,
                value: Value::Id,
            }],
        );
        assert_eq!(reply(&h, &exists).items[0].value, Value::Flag(false));
    }

    #[test]
    fn wrong_secret_is_refused_and_stores_nothing() {
        let h = handler(Some(b"s3cret"));
        let id = ObjectId::random();
        let put = Message::request(
            Op::Put,
            1,
            Bytes::from_static(b"guess"),
            vec![Item {
                id,
                value: Value::Data(Bytes::from_static(b"v")),
            }],
        );
        let r = reply(&h, &put);
        assert_eq!((r.status, r.request_id), (Status::Unauthorized, 1));
        assert!(!h.served.contains(id));
    }

    #[test]
    fn malformed_requests_get_error_replies() {
        let h = handler(None);
        let put = Message::request(
            Op::Put,
            5,
            Bytes::new(),
            vec![Item {
                id: ObjectId::random(),
                value: Value::Data(Bytes::from_static(b"abc")),
            }],
        );
        let mut frames = put.encode();
        frames.pop();
        let r = Message::decode(h.handle(frames).unwrap(), &Limits::default()).unwrap();
        assert_eq!((r.status, r.request_id), (Status::BadRequest, 5));
        assert!(h.handle(vec![Bytes::from_static(b"garbage")]).is_none());
        let mut head = put.encode()[0].to_vec();
        head[4] = 2;
        let r = Message::decode(
            h.handle(vec![Bytes::from(head)]).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(r.status, Status::BadVersion);
    }
}
