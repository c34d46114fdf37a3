//! How a plugin is named between the registry, the router and a call.

use serde::{Deserialize, Serialize};

/// A plugin by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PluginRef {
    pub namespace: String,
    pub name: String,
}

impl PluginRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> PluginRef {
        PluginRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Parses `namespace/name`.
    pub fn parse(key: &str) -> Option<PluginRef> {
        let (ns, name) = key.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .then(|| PluginRef::new(ns, name))
    }
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
