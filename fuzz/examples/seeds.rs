//! Writes the seed inputs (valid inputs made by the encoders, and a few
//! near misses) into `fuzz/corpus/<target>/seed-<n>`:
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`.

use std::path::Path;

type Seeds = fn() -> Vec<Vec<u8>>;

fn main() -> std::io::Result<()> {
    let targets: [(&str, Seeds); 5] = [
        ("key_text", proxystore_core::fuzzing::key_text_seeds),
        ("peer_wire", proxystore_peer::fuzzing::peer_wire_seeds),
        ("peer_address", proxystore_peer::fuzzing::peer_address_seeds),
        ("resp_reply", proxystore_redis::fuzzing::resp_reply_seeds),
        (
            "ucx_am_header",
            proxystore_ucx::fuzzing::ucx_am_header_seeds,
        ),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in targets {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        let seeds = seeds();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
