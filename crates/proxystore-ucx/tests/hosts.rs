//! Two hosts on one machine: the owner and the reader run in separate
//! network namespaces joined by a veth pair, so the worker address a key
//! carries must be reached over a real interface with its own IP (as
//! between nodes), not over loopback. Then the owner's link goes down (a
//! node that vanished without closing anything): the reader's next get
//! must end in a typed error at its timeout, not hang.
//!
//! Needs root and iproute2 (`ip netns`); skipped with a printed reason
//! otherwise. CI runs as root and `ci/install-deps.sh` installs iproute2.

#![allow(clippy::unwrap_used)] // Tests fail loudly by design.

use std::process::Command;
use std::time::{Duration, Instant};

use proxystore_core::testing::faults::ip;
use proxystore_core::testing::{
    self, child_command, child_role, output_field, run_child, spawn_child_until,
};
use proxystore_core::{Connector, Error};
use proxystore_ucx::{PeerConfig, UcxConnector, UcxConnectorExt, ADDRESS, KIND};

/// Two namespaces and the veth pair between them; removed on drop.
struct Hosts {
    owner_ns: String,
    reader_ns: String,
    owner_dev: String,
    reader_dev: String,
}

impl Hosts {
    /// Sets up the two hosts, or says why it cannot.
    fn create() -> Result<Hosts, String> {
        // Namespaces need root.
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| format!("id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not root".into());
        }
        let tag = std::process::id() % 100_000;
        let hosts = Hosts {
            owner_ns: format!("ps-owner-{tag}"),
            reader_ns: format!("ps-reader-{tag}"),
            owner_dev: format!("pso{tag}"),
            reader_dev: format!("psr{tag}"),
        };
        // From here on, drop cleans up whatever was made.
        ip(&["netns", "add", &hosts.owner_ns])?;
        ip(&["netns", "add", &hosts.reader_ns])?;
        ip(&[
            "link",
            "add",
            &hosts.owner_dev,
            "type",
            "veth",
            "peer",
            "name",
            &hosts.reader_dev,
        ])?;
        for (dev, ns, addr) in [
            (&hosts.owner_dev, &hosts.owner_ns, "10.213.7.1/24"),
            (&hosts.reader_dev, &hosts.reader_ns, "10.213.7.2/24"),
        ] {
            ip(&["link", "set", dev, "netns", ns])?;
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    /// `cmd` run inside namespace `ns`, with its environment.
    fn inside(ns: &str, cmd: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", ns])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        wrapped
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        let _ = ip(&["netns", "del", &self.owner_ns]);
        let _ = ip(&["netns", "del", &self.reader_ns]);
    }
}

#[test]
fn child_entry() {
    let Some(role) = child_role() else {
        return;
    };
    std::env::set_var("PROXYSTORE_UCX_SECRET", "hosts-test");
    match role.as_str() {
        "owner" => testing::serve_as_owner(&UcxConnector::open().unwrap()),
        "reader" => {
            let keys = testing::keys_from_env();
            let mut config = PeerConfig::new(KIND, ADDRESS);
            config.timeout = Duration::from_secs(3);
            let c = UcxConnector::with_config(config).unwrap();
            let got = c.get_batch(&keys).unwrap();
            let want: Vec<_> = testing::owner_objects().into_iter().map(Some).collect();
            assert_eq!(got, want);
            assert!(c.exists(&keys[1]).unwrap());
            println!("READ=ok");
            // The owner's host drops off the network.
            let owner_ns = std::env::var("OWNER_NS").unwrap();
            let owner_dev = std::env::var("OWNER_DEV").unwrap();
            ip(&["-n", &owner_ns, "link", "set", &owner_dev, "down"]).unwrap();
            let started = Instant::now();
            let err = c.get(&keys[0]).unwrap_err();
            assert!(
                matches!(err, Error::Timeout { .. } | Error::PeerUnreachable { .. }),
                "{err}"
            );
            println!("CUT_ERROR={err}");
            println!("CUT_MS={}", started.elapsed().as_millis());
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn two_hosts_over_tcp_and_a_vanished_owner_host() {
    let hosts = match Hosts::create() {
        Ok(h) => h,
        Err(reason) => {
            // Straight to stderr, past libtest's capture: a skip must show in CI logs.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIP: two-host test needs network namespaces ({reason})"
            );
            return;
        }
    };
    let mut owner_cmd = child_command("child_entry", "owner");
    owner_cmd
        .env("UCX_TLS", "tcp")
        .env("UCX_NET_DEVICES", &hosts.owner_dev);
    let (mut owner, keys) =
        spawn_child_until(Hosts::inside(&hosts.owner_ns, &owner_cmd), "OWNER_KEYS");
    let mut reader_cmd = child_command("child_entry", "reader");
    reader_cmd
        .env("UCX_TLS", "tcp")
        .env("UCX_NET_DEVICES", &hosts.reader_dev)
        .env("KEYS", &keys)
        .env("OWNER_NS", &hosts.owner_ns)
        .env("OWNER_DEV", &hosts.owner_dev);
    let stdout = run_child(Hosts::inside(&hosts.reader_ns, &reader_cmd));
    owner.kill().unwrap();
    owner.wait().unwrap();
    assert_eq!(output_field(&stdout, "READ"), "ok");
    let ms: u64 = output_field(&stdout, "CUT_MS").parse().unwrap();
    println!(
        "owner host cut: {} after {ms} ms",
        output_field(&stdout, "CUT_ERROR")
    );
    // The 3 s timeout, give or take scheduling; never a hang.
    assert!(
        (2_000..15_000).contains(&ms),
        "get after the owner's link went down ended after {ms} ms ({})",
        output_field(&stdout, "CUT_ERROR")
    );
}
