//! A bridge's `ingress.rateLimit`: one token bucket per bridge per worker, kept across
//! configuration reloads while its shape is unchanged (a reload must not refill it).

use std::sync::Mutex;
use std::time::Duration;

use causeway_config::RateLimitConfig;

use crate::delivery::limits::TokenBucket;
use crate::sync::lock;

/// The token bucket of one bridge's ingress.
pub struct IngressLimit {
    shape: (u32, u32),
    bucket: Mutex<TokenBucket>,
}

impl IngressLimit {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        IngressLimit {
            shape: (cfg.per_second, cfg.burst),
            bucket: Mutex::new(TokenBucket::new(cfg.per_second, cfg.burst)),
        }
    }

    /// Whether this bucket was built from `cfg` (and can be kept when `cfg` is applied).
    pub fn is_for(&self, cfg: &RateLimitConfig) -> bool {
        self.shape == (cfg.per_second, cfg.burst)
    }

    /// Take a token, or say how many whole seconds to wait (at least 1), for `Retry-After`.
    pub fn try_take(&self) -> Result<(), u64> {
        lock(&self.bucket).try_take().map_err(retry_after_secs)
    }
}

/// `Retry-After` in whole seconds: the wait rounded up, never 0.
fn retry_after_secs(wait: Duration) -> u64 {
    let s = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    s.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_taken_then_refused_with_a_wait_of_at_least_one_second() {
        let l = IngressLimit::new(&RateLimitConfig {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert_eq!(l.try_take(), Ok(()));
        }
        // One token a second: a thousand takes cannot all pass.
        let refused = (0..1000).find_map(|_| l.try_take().err());
        assert_eq!(refused, Some(1));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn the_bucket_is_kept_only_for_the_same_shape() {
        let cfg = RateLimitConfig {
            per_second: 5,
            burst: 10,
        };
        let l = IngressLimit::new(&cfg);
        assert!(l.is_for(&cfg));
        assert!(!l.is_for(&RateLimitConfig {
            per_second: 5,
            burst: 11
        }));
    }
}
