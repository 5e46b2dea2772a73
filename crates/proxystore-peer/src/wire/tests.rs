//! Round trips, malformed input and limits of the wire format.

use super::*;
use proptest::prelude::*;

fn id(n: u128) -> ObjectId {
    ObjectId::from_u128(n)
}

#[test]
fn put_request_round_trips_with_payload_frames() {
    let m = Message::request(
        Op::Put,
        7,
        Bytes::from_static(b"secret"),
        vec![
            Item {
                id: id(1),
                value: Value::Data(Bytes::from_static(b"abc")),
            },
            Item {
                id: id(2),
                value: Value::Data(Bytes::new()),
            },
        ],
    );
    let frames = m.encode();
    assert_eq!(frames.len(), 3);
    assert_eq!(Message::decode(frames, &Limits::default()).unwrap(), m);
}

#[test]
fn get_response_marks_absent_objects() {
    let m = Message::ok(
        Op::Get,
        9,
        vec![
            Item {
                id: id(1),
                value: Value::Absent,
            },
            Item {
                id: id(2),
                value: Value::Data(Bytes::from_static(b"x")),
            },
        ],
    );
    assert_eq!(Message::decode(m.encode(), &Limits::default()).unwrap(), m);
}

#[test]
fn remote_descriptors_and_flags_round_trip() {
    let mut req = Message::request(
        Op::Get,
        3,
        Bytes::new(),
        vec![Item {
            id: id(1),
            value: Value::Id,
        }],
    );
    req.flags = ACCEPTS_REMOTE;
    assert_eq!(
        Message::decode(req.encode(), &Limits::default()).unwrap(),
        req
    );
    let m = Message::ok(
        Op::Get,
        3,
        vec![
            Item {
                id: id(1),
                value: Value::Remote(Bytes::from_static(b"addr+rkey")),
            },
            Item {
                id: id(2),
                value: Value::Data(Bytes::from_static(b"xyz")),
            },
        ],
    );
    assert_eq!(Message::decode(m.encode(), &Limits::default()).unwrap(), m);
}

#[test]
fn truncated_and_oversized_messages_are_errors() {
    let limits = Limits {
        max_object: 4,
        max_items: 2,
        max_aux: 8,
    };
    let put = |n: usize| {
        Message::request(
            Op::Put,
            1,
            Bytes::new(),
            vec![Item {
                id: id(1),
                value: Value::Data(Bytes::from(vec![0; n])),
            }],
        )
    };
    let mut frames = put(3).encode();
    frames.pop();
    assert_eq!(
        Message::decode(frames, &limits),
        Err(WireError::MissingFrame)
    );
    assert!(matches!(
        Message::decode(put(5).encode(), &limits),
        Err(WireError::TooLarge { .. })
    ));
    let mut frames = put(3).encode();
    frames[1] = Bytes::from_static(b"ab");
    assert!(matches!(
        Message::decode(frames, &limits),
        Err(WireError::FrameLength { .. })
    ));
    let many = Message::request(
        Op::Get,
        1,
        Bytes::new(),
        (0..3)
            .map(|n| Item {
                id: id(n),
                value: Value::Id,
            })
            .collect(),
    );
    assert!(matches!(
        Message::decode(many.encode(), &limits),
        Err(WireError::TooManyItems { .. })
    ));
    let mut head = put(1).encode()[0].to_vec();
    head[4] = 9;
    assert!(matches!(
        Message::decode(vec![Bytes::from(head)], &limits),
        Err(WireError::BadVersion { version: 9, .. })
    ));
    assert_eq!(
        Message::decode(vec![Bytes::from_static(b"PXSW")], &limits),
        Err(WireError::Short(4))
    );
    assert_eq!(Message::decode(vec![], &limits), Err(WireError::NoFrames));
}

proptest! {
    #[test]
    fn random_frames_never_panic(head in proptest::collection::vec(any::<u8>(), 0..200), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut head = head;
        if head.len() >= 5 && head[0] % 2 == 0 {
            head[..5].copy_from_slice(b"PXSW\x01");
        }
        let _ = Message::decode(vec![Bytes::from(head), Bytes::from(tail)], &Limits::default());
    }

    #[test]
    fn messages_round_trip(ids in proptest::collection::vec(any::<u128>(), 0..20), rid: u64, op in 1u8..5) {
        let op = Op::from_u8(op).unwrap();
        let items: Vec<Item> = ids.iter().map(|&n| Item {
            id: id(n),
            value: if op == Op::Put { Value::Data(Bytes::from(n.to_le_bytes().to_vec())) } else { Value::Id },
        }).collect();
        let m = Message::request(op, rid, Bytes::new(), items);
        prop_assert_eq!(Message::decode(m.encode(), &Limits::default()).unwrap(), m);
    }
}
