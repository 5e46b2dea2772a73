//! Entry points for the fuzz target in `fuzz/` and for the test that
//! replays its corpus on stable, with the seeds the target starts from.
//! Not part of the API.

use crate::resp::{Connection, Reply};

/// Largest bulk reply the fuzz connection accepts.
const MAX_BULK: u64 = 1 << 16;

/// The RESP2 bytes of `reply`, as a server sends them.
pub fn encode(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Reply::Bulk(Some(v)) => {
            out.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}

fn read_all(data: Vec<u8>) -> (Vec<Reply>, std::io::Error) {
    let mut con = Connection::replay(data, MAX_BULK);
    let mut replies = Vec::new();
    loop {
        match con.read_reply() {
            Ok(reply) => replies.push(reply),
            Err(e) => return (replies, e),
        }
    }
}

/// Reads `data` as the replies a Redis server sends, until the first
/// error, and checks: reading never panics and ends in an error (the end
/// of the input, at the latest); the replies read, encoded again, read
/// back as the same replies.
pub fn resp_reply(data: &[u8]) {
    let (replies, _) = read_all(data.to_vec());
    let mut again = Vec::new();
    for reply in &replies {
        encode(reply, &mut again);
    }
    let (reread, end) = read_all(again);
    assert_eq!(reread, replies);
    assert_eq!(end.kind(), std::io::ErrorKind::UnexpectedEof, "{end}");
}

/// Replies of every kind, as the data path sees them.
pub fn resp_reply_seeds() -> Vec<Vec<u8>> {
    let replies = [
        Reply::Status("OK".into()),
        Reply::Error("ERR wrong number of arguments".into()),
        Reply::Int(-42),
        Reply::Int(i64::MAX),
        Reply::Bulk(None),
        Reply::Bulk(Some(Vec::new())),
        Reply::Bulk(Some(b"value\r\nwith crlf".to_vec())),
        Reply::Array(None),
        Reply::Array(Some(Vec::new())),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(b"a".to_vec())),
            Reply::Bulk(None),
            Reply::Array(Some(vec![Reply::Int(1), Reply::Status("QUEUED".into())])),
        ])),
    ];
    let mut seeds: Vec<Vec<u8>> = replies
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            encode(r, &mut out);
            out
        })
        .collect();
    let mut all = Vec::new();
    for r in &replies {
        encode(r, &mut all);
    }
    seeds.push(all);
    seeds.push(b"$5\r\nabc".to_vec());
    seeds.push(b"$3\r\nabcXY".to_vec());
    seeds.push(b"*3\r\n:1\r\n".to_vec());
    seeds.push(b"%1\r\n".to_vec());
    seeds
}
