//! How an item is named: its [`Kind`] and its [`ObjectKey`] (`namespace/name`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Kinds of item a configuration holds and a problem can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Bridge,
    Plugin,
    WorkerPool,
}

impl Kind {
    /// The Kubernetes kind, as written in manifests and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bridge => "Bridge",
            Kind::Plugin => "Plugin",
            Kind::WorkerPool => "WorkerPool",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind that is not `Bridge`, `Plugin` or `WorkerPool`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?} (expected Bridge, Plugin or WorkerPool)")]
pub struct KindError(pub String);

impl FromStr for Kind {
    type Err = KindError;

    fn from_str(s: &str) -> Result<Self, KindError> {
        match s {
            "Bridge" => Ok(Kind::Bridge),
            "Plugin" => Ok(Kind::Plugin),
            "WorkerPool" => Ok(Kind::WorkerPool),
            other => Err(KindError(other.to_string())),
        }
    }
}

/// `namespace/name`: the key of a bridge or plugin in metrics, the store, the admin API
/// and status. Serialised as that one string.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parse `namespace/name`: two non-empty parts around exactly one `/`.
    pub fn parse(s: &str) -> Result<Self, ObjectKeyError> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(ObjectKey::new(ns, name))
            }
            _ => Err(ObjectKeyError(s.to_string())),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Text that is not `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not namespace/name")]
pub struct ObjectKeyError(pub String);

impl FromStr for ObjectKey {
    type Err = ObjectKeyError;

    fn from_str(s: &str) -> Result<Self, ObjectKeyError> {
        ObjectKey::parse(s)
    }
}

impl Serialize for ObjectKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ObjectKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        let k: ObjectKey = "shop/orders".parse().unwrap();
        assert_eq!(k, ObjectKey::new("shop", "orders"));
        assert_eq!(k.to_string(), "shop/orders");
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"shop/orders\"");
        assert_eq!(
            serde_json::from_str::<ObjectKey>("\"shop/orders\"").unwrap(),
            k
        );
        for bad in ["", "shop", "/orders", "shop/", "a/b/c"] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ObjectKey>("\"nope\"").is_err());
    }

    #[test]
    fn kinds_parse_and_print() {
        for k in [Kind::Bridge, Kind::Plugin, Kind::WorkerPool] {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
        assert!("Stream".parse::<Kind>().is_err());
    }
}
