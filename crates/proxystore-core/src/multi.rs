//! `MultiConnector` (kind `multi`): routes each put to one of several
//! connectors by policy, as Python ProxyStore's `MultiConnector` does.
//!
//! - Each child has a name, a [`ConnectorConfig`] and a [`Policy`]. A put
//!   goes to the valid child of highest priority (size within bounds, tags
//!   as the policy asks, host pattern matching this host); none valid is
//!   [`Error::Config`] naming the size and tags.
//! - A child whose host pattern does not match this host is *dormant*: kept
//!   as config (so the config still carries it), never built here, and a
//!   key naming it is an error here (as in Python ProxyStore: its data may
//!   be reachable only where the pattern matches).
//! - Keys keep the child's id and size; the location is `<child>~<the
//!   child's location>`, so the key text names the child and round-trips.
//! - The config holds every child's config and policy, JSON-encoded in one
//!   option (`children`), so a proxy rebuilds the whole routing elsewhere.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::connector::{connector_from_config, Capabilities, Connector, ConnectorConfig};
use crate::connector::{DeferrableConnector, PutHints};
use crate::{Error, Key, Result};

/// The connector kind.
pub const KIND: &str = "multi";
/// Separates the child's name from its own location in a key.
const SEP: char = '~';

/// When a child takes an object (Python ProxyStore's `Policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Among valid children the highest priority wins (ties: the first).
    pub priority: i64,
    /// Regular expressions matched against the whole hostname; `None`: any
    /// host. A child that matches none here is dormant.
    pub host_pattern: Option<Vec<String>>,
    /// Smallest object taken, in bytes.
    pub min_size_bytes: u64,
    /// Largest object taken, in bytes.
    pub max_size_bytes: u64,
    /// A put's `subset_tags` must all be among these.
    pub subset_tags: Vec<String>,
    /// A put's `superset_tags` must include all of these.
    pub superset_tags: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            priority: 0,
            host_pattern: None,
            min_size_bytes: 0,
            max_size_bytes: u64::MAX,
            subset_tags: Vec::new(),
            superset_tags: Vec::new(),
        }
    }
}

impl Policy {
    /// Whether an object of `size` bytes (`None`: not known yet) with
    /// `hints` may go to this child, host aside.
    pub fn accepts(&self, size: Option<u64>, hints: &PutHints) -> bool {
        let size_ok = size.is_none_or(|s| (self.min_size_bytes..=self.max_size_bytes).contains(&s));
        let subset_ok = hints
            .subset_tags
            .iter()
            .all(|t| self.subset_tags.contains(t));
        let superset_ok = self
            .superset_tags
            .iter()
            .all(|t| hints.superset_tags.contains(t));
        size_ok && subset_ok && superset_ok
    }

    /// Whether this host may use the child (a pattern matches the whole
    /// hostname). A malformed pattern is a config error.
    pub fn matches_host(&self, hostname: &str) -> Result<bool> {
        let Some(patterns) = &self.host_pattern else {
            return Ok(true);
        };
        for p in patterns {
            let re = regex_lite::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| Error::Config(format!("multi: host pattern '{p}': {e}")))?;
            if re.is_match(hostname) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// One child: its name (used in keys), config and policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// Its name in keys: no whitespace, no `~`.
    pub name: String,
    /// How to build it.
    pub config: ConnectorConfig,
    /// When it takes an object.
    pub policy: Policy,
}

struct Slot {
    child: Child,
    /// Its host pattern matches this host: it is built and used here.
    active: bool,
    built: OnceLock<Arc<dyn Connector>>,
}

/// Routes puts to several connectors by policy; gets follow the key.
pub struct MultiConnector {
    slots: Vec<Slot>,
    by_name: BTreeMap<String, usize>,
    closed: crate::ClosedFlag,
}

impl std::fmt::Debug for MultiConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.slots.iter().map(|s| &s.child.name).collect();
        f.debug_struct("MultiConnector")
            .field("children", &names)
            .finish()
    }
}

/// This host's name (`/proc/sys/kernel/hostname`, else `/etc/hostname`,
/// else `HOSTNAME`), as host patterns see it.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

impl MultiConnector {
    /// A multi connector over `children`, with policies checked against
    /// this host. Children are built on first use.
    pub fn new(children: Vec<Child>) -> Result<Self> {
        Self::for_host(children, &hostname())
    }

    /// As [`MultiConnector::new`], as if on host `hostname`.
    pub fn for_host(children: Vec<Child>, hostname: &str) -> Result<Self> {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| crate::register_connector(KIND, Self::from_config_boxed));
        if children.is_empty() {
            return Err(Error::Config("multi: no children".into()));
        }
        let mut by_name = BTreeMap::new();
        let mut slots = Vec::with_capacity(children.len());
        for (i, child) in children.into_iter().enumerate() {
            if child.name.is_empty()
                || child.name.contains(SEP)
                || child
                    .name
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(Error::Config(format!(
                    "multi: child name '{}' must be non-empty, without whitespace or '{SEP}'",
                    child.name
                )));
            }
            if by_name.insert(child.name.clone(), i).is_some() {
                return Err(Error::Config(format!(
                    "multi: two children named '{}'",
                    child.name
                )));
            }
            let active = child.policy.matches_host(hostname)?;
            slots.push(Slot {
                child,
                active,
                built: OnceLock::new(),
            });
        }
        Ok(MultiConnector {
            slots,
            by_name,
            closed: crate::ClosedFlag::new(),
        })
    }

    /// Rebuilds from a `multi` config (option `children`: JSON of the
    /// children).
    pub fn from_config(config: &ConnectorConfig) -> Result<Self> {
        let json = config.require("children")?;
        let children: Vec<Child> = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("multi: option 'children' is not valid: {e}")))?;
        Self::new(children)
    }

    pub(crate) fn from_config_boxed(config: &ConnectorConfig) -> Result<Box<dyn Connector>> {
        Ok(Box::new(Self::from_config(config)?))
    }

    /// The children's names, in order.
    pub fn children(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.child.name.as_str()).collect()
    }

    fn built(&self, i: usize) -> Result<&Arc<dyn Connector>> {
        let slot = &self.slots[i];
        if !slot.active {
            return Err(Error::Config(format!(
                "multi: child '{}' is dormant on this host (its host pattern {:?} does not match '{}')",
                slot.child.name,
                slot.child.policy.host_pattern.as_deref().unwrap_or_default(),
                hostname()
            )));
        }
        if let Some(c) = slot.built.get() {
            return Ok(c);
        }
        let c: Arc<dyn Connector> = Arc::from(connector_from_config(&slot.child.config)?);
        // Another thread may have built it meanwhile: keep the first.
        Ok(slot.built.get_or_init(|| c))
    }

    /// The child a put of `size` bytes with `hints` goes to.
    fn route(&self, size: Option<u64>, hints: &PutHints, deferrable: bool) -> Result<usize> {
        let mut best: Option<(i64, usize)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            if !slot.active || !slot.child.policy.accepts(size, hints) {
                continue;
            }
            if deferrable && self.built(i)?.as_deferrable().is_none() {
                continue;
            }
            let p = slot.child.policy.priority;
            if best.is_none_or(|(bp, _)| p > bp) {
                best = Some((p, i));
            }
        }
        best.map(|(_, i)| i).ok_or_else(|| {
            Error::Config(format!(
                "multi: no child takes an object of {} with subset tags {:?} and superset tags {:?} on this host",
                size.map_or("unknown size".to_string(), |s| format!("{s} bytes")),
                hints.subset_tags,
                hints.superset_tags
            ))
        })
    }

    /// The key of a child's key: the child's name before its location.
    fn wrap(&self, i: usize, inner: Key) -> Result<Key> {
        let location = format!(
            "{}{SEP}{}",
            self.slots[i].child.name,
            inner.location().unwrap_or("")
        );
        let key = Key::new(inner.id());
        let key = match inner.size() {
            Some(s) => key.with_size(s),
            None => key,
        };
        key.with_location(&location)
    }

    /// The child a key names and the child's own key.
    fn unwrap(&self, key: &Key) -> Result<(usize, Key)> {
        let bad = |reason| Error::InvalidKey {
            text: key.to_string().chars().take(200).collect(),
            reason,
        };
        let location = key
            .location()
            .ok_or_else(|| bad("a multi key names its child (<id>@<child>~<location>)"))?;
        let (name, rest) = location
            .split_once(SEP)
            .ok_or_else(|| bad("a multi key's location is <child>~<location>"))?;
        let &i = self
            .by_name
            .get(name)
            .ok_or_else(|| bad("the key names no child of this multi connector"))?;
        let mut inner = Key::new(key.id());
        if let Some(s) = key.size() {
            inner = inner.with_size(s);
        }
        if !rest.is_empty() {
            inner = inner.with_location(rest)?;
        }
        Ok((i, inner))
    }

    /// Runs `op` once per child on its keys, keeping the callers' order.
    fn per_child<T>(
        &self,
        keys: &[Key],
        op: impl Fn(&dyn Connector, &[Key]) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut groups: BTreeMap<usize, (Vec<usize>, Vec<Key>)> = BTreeMap::new();
        for (at, key) in keys.iter().enumerate() {
            let (i, inner) = self.unwrap(key)?;
            let g = groups.entry(i).or_default();
            g.0.push(at);
            g.1.push(inner);
        }
        let mut out: Vec<Option<T>> = keys.iter().map(|_| None).collect();
        for (i, (places, inner)) in groups {
            let results = op(self.built(i)?.as_ref(), &inner)?;
            if results.len() != places.len() {
                return Err(Error::Internal {
                    what: "a child answered a batch with another number of results",
                });
            }
            for (at, r) in places.into_iter().zip(results) {
                out[at] = Some(r);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Puts `data` where its size and `hints` route it.
    pub fn put_with(&self, data: Bytes, hints: &PutHints) -> Result<Key> {
        self.closed.check(KIND)?;
        let i = self.route(Some(data.len() as u64), hints, false)?;
        let inner = self.built(i)?.put(data)?;
        self.wrap(i, inner)
    }
}

impl Connector for MultiConnector {
    fn kind(&self) -> &str {
        KIND
    }

    /// What every child can do (a proxy may name any of them).
    fn capabilities(&self) -> Capabilities {
        let built: Vec<_> = (0..self.slots.len())
            .filter_map(|i| self.built(i).ok())
            .collect();
        let all = |f: fn(&Capabilities) -> bool| built.iter().all(|c| f(&c.capabilities()));
        Capabilities::none()
            .with_native_batch(true)
            .with_deferrable(built.iter().any(|c| c.as_deferrable().is_some()))
            .with_cross_process(all(|c| c.cross_process))
            .with_survives_producer_exit(all(|c| c.survives_producer_exit))
    }

    fn put(&self, data: Bytes) -> Result<Key> {
        self.put_with(data, &PutHints::default())
    }

    fn put_hinted(&self, data: Bytes, hints: &PutHints) -> Result<Key> {
        self.put_with(data, hints)
    }

    fn put_batch(&self, data: Vec<Bytes>) -> Result<Vec<Key>> {
        data.into_iter().map(|d| self.put(d)).collect()
    }

    fn get(&self, key: &Key) -> Result<Option<Bytes>> {
        self.closed.check(KIND)?;
        let (i, inner) = self.unwrap(key)?;
        self.built(i)?.get(&inner)
    }

    fn get_batch(&self, keys: &[Key]) -> Result<Vec<Option<Bytes>>> {
        self.closed.check(KIND)?;
        self.per_child(keys, |c, k| c.get_batch(k))
    }

    fn exists(&self, key: &Key) -> Result<bool> {
        self.closed.check(KIND)?;
        let (i, inner) = self.unwrap(key)?;
        self.built(i)?.exists(&inner)
    }

    fn evict(&self, key: &Key) -> Result<()> {
        self.closed.check(KIND)?;
        let (i, inner) = self.unwrap(key)?;
        self.built(i)?.evict(&inner)
    }

    fn config(&self) -> ConnectorConfig {
        let children: Vec<Child> = self
            .slots
            .iter()
            .map(|s| Child {
                // A built child's own config (an ephemeral port resolved,
                // say) is what another process must rebuild.
                config: s
                    .built
                    .get()
                    .map_or_else(|| s.child.config.clone(), |c| c.config()),
                ..s.child.clone()
            })
            .collect();
        let json = serde_json::to_string(&children).unwrap_or_default();
        ConnectorConfig::new(KIND).with("children", json)
    }

    fn close(&self) -> Result<()> {
        self.closed.close();
        for slot in &self.slots {
            if let Some(c) = slot.built.get() {
                c.close()?;
            }
        }
        Ok(())
    }

    fn as_deferrable(&self) -> Option<&dyn DeferrableConnector> {
        Some(self)
    }
}

impl DeferrableConnector for MultiConnector {
    /// A key from the highest-priority deferrable child whose policy takes
    /// an object of unknown size.
    fn new_key(&self) -> Result<Key> {
        self.closed.check(KIND)?;
        let i = self.route(None, &PutHints::default(), true)?;
        let child = self.built(i)?;
        let inner = child
            .as_deferrable()
            .ok_or(Error::Internal {
                what: "multi: route chose a child that is not deferrable",
            })?
            .new_key()?;
        self.wrap(i, inner)
    }

    fn set(&self, key: &Key, data: Bytes) -> Result<()> {
        self.closed.check(KIND)?;
        let (i, inner) = self.unwrap(key)?;
        let child = self.built(i)?;
        let d = child.as_deferrable().ok_or_else(|| Error::Unsupported {
            connector: child.kind().to_string(),
            op: "set of a deferred key",
        })?;
        d.set(&inner, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalConnector;

    thread_local! {
        /// The local connectors the children's configs name: a local
        /// config rebuilds only while its connector lives.
        static KEEP: std::cell::RefCell<Vec<LocalConnector>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn child(name: &str, policy: Policy) -> Child {
        let local = LocalConnector::new();
        let config = local.config();
        KEEP.with(|k| k.borrow_mut().push(local));
        Child {
            name: name.into(),
            config,
            policy,
        }
    }

    fn multi(host: &str) -> MultiConnector {
        let small = Policy {
            priority: 1,
            max_size_bytes: 1000,
            ..Policy::default()
        };
        let large = Policy {
            min_size_bytes: 1001,
            subset_tags: vec!["hot".into(), "cold".into()],
            ..Policy::default()
        };
        let here = Policy {
            priority: 9,
            host_pattern: Some(vec!["node[0-9]+".into()]),
            superset_tags: vec!["pinned".into()],
            ..Policy::default()
        };
        MultiConnector::for_host(
            vec![
                child("small", small),
                child("large", large),
                child("here", here),
            ],
            host,
        )
        .unwrap()
    }

    fn child_of(key: &Key) -> &str {
        key.location().unwrap().split_once(SEP).unwrap().0
    }

    #[test]
    fn puts_go_to_the_valid_child_of_highest_priority() {
        let m = multi("login1");
        let k = m.put(Bytes::from(vec![1u8; 10])).unwrap();
        assert_eq!(child_of(&k), "small");
        let k2 = m.put(Bytes::from(vec![2u8; 5000])).unwrap();
        assert_eq!(child_of(&k2), "large");
        assert_eq!(m.get(&k).unwrap().unwrap().len(), 10);
        // A subset tag the large policy lacks: no valid child.
        let e = m
            .put_hinted(Bytes::from(vec![0u8; 5000]), &PutHints::subset(&["warm"]))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("no child takes an object of 5000 bytes"),
            "{e}"
        );
        // "here" is dormant on login1 whatever the tags.
        let k3 = m
            .put_hinted(Bytes::from(vec![3u8; 10]), &PutHints::superset(&["pinned"]))
            .unwrap();
        assert_eq!(child_of(&k3), "small");
    }

    #[test]
    fn host_patterns_match_the_whole_hostname() {
        let m = multi("node17");
        let k = m
            .put_hinted(
                Bytes::from(vec![3u8; 10]),
                &PutHints::superset(&["pinned", "x"]),
            )
            .unwrap();
        assert_eq!(child_of(&k), "here");
        // Without the superset tag its policy does not hold.
        assert_eq!(
            child_of(&m.put(Bytes::from(vec![1u8; 10])).unwrap()),
            "small"
        );
        // A key of the "here" child is unusable where it is dormant.
        let dormant = multi("node17-login");
        assert!(matches!(dormant.get(&k), Err(Error::Config(ref e)) if e.contains("dormant")));
        // Not a full match: dormant.
        let m = multi("node17-login");
        let k = m
            .put_hinted(Bytes::from(vec![3u8; 10]), &PutHints::superset(&["pinned"]))
            .unwrap();
        assert_eq!(child_of(&k), "small");
        assert!(Policy {
            host_pattern: Some(vec!["(".into()]),
            ..Policy::default()
        }
        .matches_host("x")
        .is_err());
    }

    #[test]
    fn keys_name_their_child_and_bad_ones_are_typed_errors() {
        let m = multi("login1");
        let k = m.put(Bytes::from_static(b"abc")).unwrap();
        let parsed: Key = k.to_string().parse().unwrap();
        assert_eq!(m.get(&parsed).unwrap().as_deref(), Some(&b"abc"[..]));
        let other = Key::random().with_location("nosuch~x").unwrap();
        assert!(matches!(m.get(&other), Err(Error::InvalidKey { .. })));
        let bare = Key::random();
        assert!(matches!(m.exists(&bare), Err(Error::InvalidKey { .. })));
        let names = vec![child("a~b", Policy::default())];
        assert!(MultiConnector::for_host(names, "h").is_err());
        let twins = vec![child("a", Policy::default()), child("a", Policy::default())];
        assert!(MultiConnector::for_host(twins, "h").is_err());
    }

    #[test]
    fn batches_keep_their_order_across_children() {
        let m = multi("login1");
        let data: Vec<Bytes> = [10usize, 5000, 20, 6000]
            .iter()
            .map(|&n| Bytes::from(vec![n as u8; n]))
            .collect();
        let keys = m.put_batch(data.clone()).unwrap();
        let got = m.get_batch(&keys).unwrap();
        assert_eq!(got, data.into_iter().map(Some).collect::<Vec<_>>());
    }
}
