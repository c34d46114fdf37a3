//! The active configuration and its swaps: the config stage's handle. It owns the running
//! [`Active`] (bridges compiled, paths, per-item errors) and the suspensions set through the
//! admin API over the configuration's own `suspend` flags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use causeway_config::{ItemError, SecretValue, WorkerConfig};

use crate::bridge::ActiveBridge;
use crate::sync::{lock, read, write};

/// One applied configuration.
pub struct Active {
    pub config: Arc<WorkerConfig>,
    pub bridges: HashMap<String, Arc<ActiveBridge>>,
    /// Path → bridge key.
    pub by_path: HashMap<String, String>,
    /// Items left out by the renderer or not applied here, as the admin API reports them.
    pub errors: Vec<ItemError>,
    pub loaded_at_ms: u64,
    /// Counts this configuration in `causeway_config_generations_live` while it lives.
    /// Keep it the last field: fields drop in order, and its drop gives back the memory
    /// the fields above freed.
    pub alive: Option<Alive>,
}

/// One configuration counted in a gauge from its creation until it is dropped: a swap
/// that leaves the old configuration referenced somewhere shows as a gauge above 1.
pub struct Alive(prometheus::IntGauge);

impl Alive {
    pub fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Alive(gauge.clone())
    }
}

impl Drop for Alive {
    /// The last field of [`Active`]: by now its bridges and config have been dropped, so
    /// what they held can go back to the system.
    fn drop(&mut self) {
        self.0.dec();
        crate::memory::release_freed();
    }
}

impl Active {
    pub fn empty() -> Self {
        Active {
            config: Arc::new(WorkerConfig::default()),
            bridges: HashMap::new(),
            by_path: HashMap::new(),
            errors: vec![],
            loaded_at_ms: 0,
            alive: None,
        }
    }
}

/// The config handle: what ingress, delivery and admin read of the configuration.
pub struct ConfigHandle {
    active: RwLock<Arc<Active>>,
    /// Suspensions set through the admin API, over the config's `suspend`.
    overrides: Mutex<HashMap<String, bool>>,
    /// The admin token this worker made up because its configuration has none and its
    /// admin address is not loopback (local mode on `0.0.0.0`, say). Printed once at start.
    generated_admin_token: Option<SecretValue>,
}

impl ConfigHandle {
    pub fn new(generated_admin_token: Option<SecretValue>) -> Self {
        ConfigHandle {
            active: RwLock::new(Arc::new(Active::empty())),
            overrides: Mutex::new(HashMap::new()),
            generated_admin_token,
        }
    }

    /// The configuration running now.
    pub fn active(&self) -> Arc<Active> {
        read(&self.active).clone()
    }

    /// Swaps in `next`. A suspension toggled through the admin API lasts until the
    /// configuration's own flag for that bridge changes (or the bridge goes).
    pub fn swap(&self, next: Arc<Active>) {
        let old = self.active();
        lock(&self.overrides).retain(|k, _| match (old.bridges.get(k), next.bridges.get(k)) {
            (Some(a), Some(b)) => a.cfg.suspend == b.cfg.suspend,
            _ => false,
        });
        *write(&self.active) = next;
    }

    pub fn is_suspended(&self, bridge: &str) -> bool {
        let over = lock(&self.overrides).get(bridge).copied();
        over.unwrap_or_else(|| {
            self.active()
                .bridges
                .get(bridge)
                .is_some_and(|b| b.cfg.suspend)
        })
    }

    /// Suspends or resumes a bridge until the configuration's own flag changes. The
    /// caller wakes delivery.
    pub fn set_suspended(&self, bridge: &str, suspended: bool) {
        lock(&self.overrides).insert(bridge.to_string(), suspended);
    }

    /// The token the admin API requires, if any. `Some("")` refuses every call.
    pub fn admin_token(&self) -> Option<SecretValue> {
        self.active()
            .config
            .admin_token
            .clone()
            .or_else(|| self.generated_admin_token.clone())
    }

    /// The token made up at start, if any (to print it once).
    pub fn generated_admin_token(&self) -> Option<&SecretValue> {
        self.generated_admin_token.as_ref()
    }
}
