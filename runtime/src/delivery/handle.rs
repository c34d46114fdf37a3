//! The delivery handle: what other stages may ask of delivery. Wake the scheduler (new
//! jobs, resumes), and the pause state of destinations: one owner keeps the in-memory set,
//! the store's paused table and the `destination_paused` gauge in agreement. The circuit
//! breakers' copy ([`Breakers`]) lives here too.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use causeway_config::DestinationConfig;
use prometheus::IntGaugeVec;
use tokio::sync::Notify;

use crate::delivery::breaker::Breakers;
use crate::delivery::limits::{DestLimits, LimitsByDestination};
use crate::delivery::nats::NatsClients;
use crate::delivery::oauth2::TokenCache;
use crate::delivery::scheduler::Dispatch;
use crate::delivery::tls::TlsClients;
use crate::delivery::window::HourWindow;
use crate::metrics::Metrics;
use crate::store::{BreakerPhase, Store, StoreError};
use crate::sync::lock;

pub struct DeliveryHandle {
    /// Wakes the scheduler (new jobs, finished attempts, resumes).
    wake: Notify,
    /// The running scheduler's slots and jobs in flight, which the hand-off shares (none
    /// while no scheduler runs: then nothing is handed over).
    dispatch: Mutex<Option<Arc<Dispatch>>>,
    /// Destinations paused by a 410, `(bridge, destination)`.
    paused: Mutex<HashSet<(String, String)>>,
    paused_gauge: IntGaugeVec,
    limits: LimitsByDestination,
    /// Bearer tokens of destinations with `oauth2`.
    pub tokens: TokenCache,
    /// HTTP clients of destinations with `tls`.
    pub tls_clients: TlsClients,
    /// NATS clients of `nats://` destinations, one per (server, credentials).
    pub nats: NatsClients,
    /// Each destination's last hour on this worker.
    pub window: HourWindow,
    /// The destinations' circuit breakers, as the store last had them.
    pub breakers: Breakers,
}

impl DeliveryHandle {
    pub fn new(metrics: &Metrics) -> Self {
        let paused_gauge: IntGaugeVec = metrics.paused.clone();
        DeliveryHandle {
            breakers: Breakers::new(
                metrics.breaker_state.clone(),
                metrics.breaker_openings.clone(),
            ),
            wake: Notify::new(),
            dispatch: Mutex::new(None),
            paused: Mutex::new(HashSet::new()),
            paused_gauge,
            limits: LimitsByDestination::default(),
            tokens: TokenCache::default(),
            tls_clients: TlsClients::default(),
            nats: NatsClients::default(),
            window: HourWindow::default(),
        }
    }

    /// Tells the scheduler to look for work now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The running scheduler's dispatch state, if a scheduler runs.
    pub(crate) fn dispatch(&self) -> Option<Arc<Dispatch>> {
        lock(&self.dispatch).clone()
    }

    /// Set by the scheduler while it runs (None when it stops).
    pub(crate) fn set_dispatch(&self, d: Option<Arc<Dispatch>>) {
        *lock(&self.dispatch) = d;
    }

    /// Resolves at the next [`DeliveryHandle::wake`].
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Loads the destinations the store has paused, and the circuit breakers (at start).
    pub async fn load_paused(&self, store: &dyn Store) -> Result<(), StoreError> {
        for (b, d) in store.paused().await? {
            self.mark(&b, &d, true);
        }
        self.breakers.load(store).await
    }

    /// Why a paused destination is paused: disabled by its circuit breaker, or a 410.
    pub fn paused_reason(&self, bridge: &str, destination: &str) -> &'static str {
        let disabled = self
            .breakers
            .state(bridge, destination)
            .is_some_and(|b| b.phase == BreakerPhase::Disabled);
        if disabled {
            causeway_config::DestinationReport::DISABLED
        } else {
            causeway_config::DestinationReport::GONE
        }
    }

    pub fn is_paused(&self, bridge: &str, destination: &str) -> bool {
        lock(&self.paused).contains(&(bridge.to_string(), destination.to_string()))
    }

    /// Every paused destination, `(bridge, destination)`.
    pub fn paused(&self) -> HashSet<(String, String)> {
        lock(&self.paused).clone()
    }

    /// A destination answered 410: its jobs wait until it is resumed. The store marked
    /// it in the attempt's own transaction; this keeps memory and the gauge in step.
    pub fn paused_by_store(&self, bridge: &str, destination: &str) {
        self.mark(bridge, destination, true);
    }

    /// Make memory and the gauge match the store's paused destinations (a store shared by
    /// several workers: another worker may have paused or resumed one).
    pub fn sync_paused(&self, in_store: &[(String, String)]) {
        let want: HashSet<(String, String)> = in_store.iter().cloned().collect();
        let have = self.paused();
        for (b, d) in have.difference(&want) {
            self.mark(b, d, false);
            self.wake();
        }
        for (b, d) in want.difference(&have) {
            self.mark(b, d, true);
        }
    }

    /// Resumes a destination: the store requeues its paused jobs, then memory, the gauge
    /// and the scheduler follow. Returns how many jobs were requeued.
    pub async fn resume(
        &self,
        store: &dyn Store,
        bridge: &str,
        destination: &str,
        now_ms: u64,
    ) -> Result<usize, StoreError> {
        let n = store
            .set_paused(bridge.to_string(), destination.to_string(), false, now_ms)
            .await?;
        // The store deleted its breaker with the pause: closed.
        self.breakers.set(bridge, destination, None);
        self.mark(bridge, destination, false);
        self.wake();
        Ok(n)
    }

    fn mark(&self, bridge: &str, destination: &str, paused: bool) {
        let key = (bridge.to_string(), destination.to_string());
        {
            let mut p = lock(&self.paused);
            if paused {
                p.insert(key);
            } else {
                p.remove(&key);
            }
        }
        self.paused_gauge
            .with_label_values(&[bridge, destination])
            .set(i64::from(paused));
    }

    /// The limits of one destination.
    pub fn limits(&self, bridge: &str, d: &DestinationConfig) -> Arc<DestLimits> {
        self.limits.get(bridge, d)
    }
}
