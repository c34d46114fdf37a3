//! Per-destination limits: `maxConcurrency` (a semaphore) and `rateLimit` (a token bucket),
//! kept per destination and rebuilt only when its limits change, so attempts of one
//! destination always share them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_config::DestinationConfig;

use crate::sync::lock;

/// A token bucket for `rateLimit`.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(per_second.max(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }
    /// Take a token, or say how long until one is there.
    pub fn try_take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Per-destination limits: a concurrency semaphore and an optional token bucket.
pub struct DestLimits {
    pub concurrency: Arc<tokio::sync::Semaphore>,
    pub bucket: Option<Mutex<TokenBucket>>,
    shape: Shape,
}

/// `(maxConcurrency, (perSecond, burst))`.
type Shape = (u32, Option<(u32, u32)>);

impl DestLimits {
    fn new(shape: Shape) -> Self {
        DestLimits {
            concurrency: Arc::new(tokio::sync::Semaphore::new(shape.0 as usize)),
            bucket: shape
                .1
                .filter(|(rate, _)| *rate > 0)
                .map(|(rate, burst)| Mutex::new(TokenBucket::new(rate, burst))),
            shape,
        }
    }
}

/// The limits of every destination, by `(bridge, destination)`.
#[derive(Default)]
pub struct LimitsByDestination(Mutex<HashMap<(String, String), Arc<DestLimits>>>);

impl LimitsByDestination {
    /// The limits of one destination, rebuilt when its configuration changes.
    pub fn get(&self, bridge: &str, d: &DestinationConfig) -> Arc<DestLimits> {
        let shape = (
            d.max_concurrency.max(1),
            d.rate_limit.as_ref().map(|r| (r.per_second, r.burst)),
        );
        let key = (bridge.to_string(), d.name.clone());
        let mut map = lock(&self.0);
        if let Some(l) = map.get(&key)
            && l.shape == shape
        {
            return l.clone();
        }
        let l = Arc::new(DestLimits::new(shape));
        map.insert(key, l.clone());
        l
    }
}
