//! Which task arguments and results travel as proxies: Python ProxyStore's
//! `ProxyNever`, `ProxyAlways`, `ProxyType` and `should_proxy`, plus the
//! size threshold of its Dask client (`ps_threshold`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What a policy sees of one value.
#[derive(Debug, Clone, Copy)]
pub struct ValueInfo<'a> {
    /// The task's name.
    pub task: &'a str,
    /// Position among the task's arguments; `None` for its result.
    pub position: Option<usize>,
    /// `std::any::type_name` of the value.
    pub type_name: &'static str,
    /// Encoded size with the store's codec, when the policy asked for it
    /// ([`ProxyPolicy::needs_size`]) or the value was encoded anyway.
    pub size: Option<usize>,
}

/// A user's decision function for [`ProxyPolicy::Predicate`].
pub type ShouldProxy = Arc<dyn Fn(&ValueInfo<'_>) -> bool + Send + Sync>;

/// Decides, per argument and result, whether it goes as a proxy (put in
/// the store, evicted when no longer needed) or by value (moved in one
/// process, inside the task message across processes).
///
/// Policies other than [`Predicate`](Self::Predicate) serialize, so worker
/// processes apply the same rule to results.
#[derive(Clone, Default, Serialize, Deserialize)]
pub enum ProxyPolicy {
    /// Everything by value (Python's `ProxyNever`).
    #[default]
    Never,
    /// Everything as a proxy (`ProxyAlways`).
    Always,
    /// A proxy when the encoded value has at least this many bytes. The
    /// value is encoded once; those bytes are what is put (or sent).
    MinSize(usize),
    /// A proxy when the value's `std::any::type_name` is listed
    /// (`ProxyType`); build it with [`ProxyPolicy::types`].
    Types(Vec<String>),
    /// A proxy when the function says so (`should_proxy`). It sees the
    /// encoded size. Cannot travel to worker processes.
    #[serde(skip)]
    Predicate(ShouldProxy),
}

impl ProxyPolicy {
    /// [`Types`](Self::Types) from type names, e.g.
    /// `ProxyPolicy::types(&[std::any::type_name::<Vec<f64>>()])`.
    pub fn types(names: &[&str]) -> Self {
        ProxyPolicy::Types(names.iter().map(|n| (*n).to_owned()).collect())
    }

    /// [`Predicate`](Self::Predicate) from a closure.
    pub fn predicate(f: impl Fn(&ValueInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        ProxyPolicy::Predicate(Arc::new(f))
    }

    /// Whether deciding needs the encoded size (so values are encoded
    /// before the decision, once).
    pub fn needs_size(&self) -> bool {
        matches!(self, ProxyPolicy::MinSize(_) | ProxyPolicy::Predicate(_))
    }

    /// The decision for one value.
    pub fn should_proxy(&self, info: &ValueInfo<'_>) -> bool {
        match self {
            ProxyPolicy::Never => false,
            ProxyPolicy::Always => true,
            ProxyPolicy::MinSize(min) => info.size.is_some_and(|s| s >= *min),
            ProxyPolicy::Types(names) => names.iter().any(|n| n == info.type_name),
            ProxyPolicy::Predicate(f) => f(info),
        }
    }
}

impl fmt::Debug for ProxyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyPolicy::Never => f.write_str("Never"),
            ProxyPolicy::Always => f.write_str("Always"),
            ProxyPolicy::MinSize(n) => write!(f, "MinSize({n})"),
            ProxyPolicy::Types(t) => f.debug_tuple("Types").field(t).finish(),
            ProxyPolicy::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(type_name: &'static str, size: Option<usize>) -> ValueInfo<'static> {
        ValueInfo {
            task: "t",
            position: Some(0),
            type_name,
            size,
        }
    }

    #[test]
    fn each_policy_decides_as_python_proxystore_does() {
        let v = std::any::type_name::<Vec<f64>>();
        assert!(!ProxyPolicy::Never.should_proxy(&info(v, Some(1 << 30))));
        assert!(ProxyPolicy::Always.should_proxy(&info(v, Some(0))));
        let min = ProxyPolicy::MinSize(100);
        assert!(min.needs_size());
        assert!(min.should_proxy(&info(v, Some(100))));
        assert!(!min.should_proxy(&info(v, Some(99))));
        assert!(!min.should_proxy(&info(v, None)));
        let types = ProxyPolicy::types(&[v]);
        assert!(types.should_proxy(&info(v, None)));
        assert!(!types.should_proxy(&info("u8", None)));
        let pred = ProxyPolicy::predicate(|i| i.position.is_none());
        assert!(!pred.should_proxy(&info(v, None)));
    }

    #[test]
    fn a_predicate_cannot_be_sent_to_a_worker_process() {
        assert!(bincode::serialize(&ProxyPolicy::MinSize(3)).is_ok());
        assert!(bincode::serialize(&ProxyPolicy::predicate(|_| true)).is_err());
    }
}
