//! The fault scenarios of connectors whose owners the tests start as child
//! processes of the test binary (ucx, ofi): an owner is an endpoint of its
//! own, so a restarted owner has a new address, and a silent owner is a
//! stopped process. Written once; each connector's `tests/faults.rs`
//! describes its owners and readers in a [`SpawnedOwners`] and calls the
//! scenarios. Every scenario holds [`serial`], warms the connector's
//! process-wide state up, ends with a get from a healthy owner, and checks
//! that fds and threads are back to the baseline.

use std::process::Command;
use std::time::{Duration, Instant};

use super::faults::{
    assert_link_down_fails_typed, assert_typed_error_in_time, get_killing_owner, serial, signal,
    unreachable_or_timeout, ChildGuard, Resources, ServerHost,
};
use super::{pattern, spawn_child_until};
use crate::{Connector, Key};

/// Size of the object an owner serves in the scenarios but the 64 MiB one.
const SMALL: usize = 100_000;

/// The body of an owner process: puts one object of `SIZE` (environment)
/// bytes, `pattern(size, 9)`, through `c`, prints `OWNER_KEY=<key>` and
/// serves until killed (60 s at most).
pub fn serve_one_object(c: &dyn Connector) {
    let size: usize = std::env::var("SIZE")
        .expect("SIZE in the owner's environment")
        .parse()
        .expect("SIZE is a byte count");
    let key = c.put(pattern(size, 9)).expect("owner put");
    println!("OWNER_KEY={key}");
    std::thread::sleep(Duration::from_secs(60));
}

/// How a connector's fault tests make owners and readers.
pub struct SpawnedOwners<C: Connector> {
    /// The connector's name in the printed `FAULT` lines.
    pub name: &'static str,
    /// A reader with the configured timeout ([`SpawnedOwners::timeout`]).
    pub reader: fn() -> C,
    /// The command of an owner process of the given size (`SIZE` in its
    /// environment) that runs [`serve_one_object`].
    pub owner: fn(usize) -> Command,
    /// A connector in this process to put the healthy object through.
    pub healthy_owner: fn() -> C,
    /// The readers' configured timeout.
    pub timeout: Duration,
    /// fds and threads a scenario may leave beyond the baseline.
    pub slack: Resources,
}

impl<C: Connector> SpawnedOwners<C> {
    /// An owner process serving `size` bytes, and its key.
    pub fn spawn_owner(&self, size: usize) -> (ChildGuard, Key) {
        self.spawn(size, |cmd| cmd)
    }

    fn spawn(&self, size: usize, wrap: impl FnOnce(Command) -> Command) -> (ChildGuard, Key) {
        let (child, key) = spawn_child_until(wrap((self.owner)(size)), "OWNER_KEY");
        (ChildGuard(child), key.parse().expect("an owner key"))
    }

    /// Runs `body` with a fresh reader: serialized, after a warm-up
    /// connector made the process-wide state, then a healthy get and the
    /// resource check named `what`.
    pub fn scenario(&self, what: &str, body: impl FnOnce(&C)) {
        let _serial = serial();
        {
            let c = (self.reader)();
            let key = c.put(pattern(10, 1)).expect("warm-up put");
            assert!(c.get(&key).expect("warm-up get").is_some());
        }
        let base = Resources::now();
        let reader = (self.reader)();
        body(&reader);
        {
            let owner = (self.healthy_owner)();
            let key = owner.put(pattern(1000, 3)).expect("healthy put");
            assert_eq!(
                reader.get(&key).expect("healthy get"),
                Some(pattern(1000, 3))
            );
        }
        drop(reader);
        base.assert_back(self.slack, what);
    }

    /// An owner SIGKILLed while a 64 MiB reply is in flight (tried with a
    /// fresh owner until the kill lands mid-reply, at most 5 times): a
    /// typed error within the timeout.
    pub fn owner_killed_mid_transfer(&self) {
        self.scenario("owner killed mid-transfer", |reader| {
            let size = 64 << 20;
            let (result, started, whole) = (1..=5)
                .find_map(|_| {
                    let (mut owner, key) = self.spawn_owner(size);
                    let got = get_killing_owner(reader, &key, size, owner.id());
                    owner.kill();
                    got
                })
                .expect("a kill mid-transfer in 5 attempts");
            println!("(a whole 64 MiB get took {} ms)", whole.as_millis());
            assert_typed_error_in_time(
                &format!("{} owner killed mid-transfer (64 MiB)", self.name),
                result,
                unreachable_or_timeout,
                started,
                self.timeout,
            );
        });
    }

    /// An owner restarted while the reader holds cached endpoints to it
    /// (several threads' worth): the first get from the new owner
    /// succeeds, a get of the dead owner's key is a typed error within the
    /// timeout, and the new owner still answers after it.
    pub fn owner_restarted(&self) {
        self.scenario("owner restart", |reader| {
            let (mut first, old) = self.spawn_owner(SMALL);
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        for _ in 0..10 {
                            assert_eq!(
                                reader.get(&old).expect("get from the first owner"),
                                Some(pattern(SMALL, 9))
                            );
                        }
                    });
                }
            });
            first.kill();
            let (_second, new) = self.spawn_owner(SMALL);
            let started = Instant::now();
            assert_eq!(
                reader.get(&new).expect("get from the restarted owner"),
                Some(pattern(SMALL, 9))
            );
            println!(
                "FAULT {} owner restarted: first get from the new owner Ok after {} ms",
                self.name,
                started.elapsed().as_millis()
            );
            let started = Instant::now();
            assert_typed_error_in_time(
                &format!("{} get from the owner before its restart", self.name),
                reader.get(&old),
                unreachable_or_timeout,
                started,
                self.timeout,
            );
            assert_eq!(
                reader.get(&new).expect("get from the restarted owner"),
                Some(pattern(SMALL, 9))
            );
        });
    }

    /// An owner stopped (SIGSTOP) before anyone connected: its kernel
    /// accepts connections, the process never answers; a typed error
    /// within the timeout.
    pub fn silent_owner(&self) {
        self.scenario("silent peer", |reader| {
            let (mut owner, key) = self.spawn_owner(SMALL);
            signal(owner.id(), "STOP");
            let started = Instant::now();
            let result = reader.get(&key);
            signal(owner.id(), "CONT");
            assert_typed_error_in_time(
                &format!("{} silent (stopped) owner", self.name),
                result,
                unreachable_or_timeout,
                started,
                self.timeout,
            );
            owner.kill();
        });
    }

    /// An owner in `host`'s namespace whose link goes down mid-use; the
    /// owner gets `bind_env` = the server end's device, so it serves on the
    /// veth, not its namespace's loopback (which this process would take
    /// for its own).
    pub fn interface_down(&self, host: &ServerHost, bind_env: &str) {
        self.scenario("interface down", |reader| {
            let (_owner, key) = self.spawn(SMALL, |mut cmd| {
                cmd.env(bind_env, host.server_device());
                host.inside(&cmd)
            });
            assert_link_down_fails_typed(
                &format!("{} interface down", self.name),
                host,
                reader,
                &key,
                &pattern(SMALL, 9),
                self.timeout,
            );
        });
    }

    /// The control: no fault, the same connectors made and dropped.
    pub fn no_fault(&self) {
        self.scenario("no fault", |_| {});
    }
}
