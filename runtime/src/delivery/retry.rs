//! Retry policies: pure functions from the retry count to a delay.

use std::time::{Duration, SystemTime};

use causeway_config::BackoffPolicy;
use causeway_config::RetryConfig;
use rand::Rng;

/// Delay before retry `n` (0 for the first retry), or `None` when the retries are spent.
pub fn delay_before_retry(cfg: &RetryConfig, n: u32, rng: &mut impl Rng) -> Option<Duration> {
    if n >= cfg.retries {
        return None;
    }
    let ms = match cfg.policy {
        // The seed's formula: (n^4) + 15 + rand(30)·(n+1) seconds.
        BackoffPolicy::Sidekiq => {
            let n64 = u64::from(n);
            let secs = n64
                .saturating_pow(4)
                .saturating_add(15)
                .saturating_add(rng.random_range(0..30u64).saturating_mul(n64 + 1));
            secs.saturating_mul(1000)
        }
        // initialDelay · 2^n with full jitter, capped at maxDelay.
        BackoffPolicy::Exponential => {
            let cap = cfg
                .initial_delay_ms
                .saturating_mul(1u64.checked_shl(n.min(40)).unwrap_or(u64::MAX))
                .min(cfg.max_delay_ms);
            if cap == 0 {
                0
            } else {
                rng.random_range(0..=cap)
            }
        }
        // The list in order; the last entry repeats (an empty list retries at once).
        BackoffPolicy::Fixed => cfg
            .delays_ms
            .get(n as usize)
            .or(cfg.delays_ms.last())
            .copied()
            .unwrap_or(0),
        BackoffPolicy::None => 0,
    };
    Some(Duration::from_millis(ms))
}

/// A `Retry-After` header (seconds or an HTTP date), clamped to `[0, max]`.
pub fn retry_after(value: &str, now: SystemTime, max: Duration) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = httpdate(v)?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(max))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
fn httpdate(s: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let dt = time::PrimitiveDateTime::parse(s, &fmt).ok()?.assume_utc();
    let secs = u64::try_from(dt.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn cfg(policy: BackoffPolicy) -> RetryConfig {
        RetryConfig {
            retries: 5,
            policy,
            initial_delay_ms: 1000,
            max_delay_ms: 10_000,
            delays_ms: vec![100, 200],
        }
    }

    #[test]
    fn sidekiq_matches_the_seed_formula() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for n in 0..5u32 {
            let d = delay_before_retry(&cfg(BackoffPolicy::Sidekiq), n, &mut rng)
                .unwrap()
                .as_secs();
            let base = u64::from(n).pow(4) + 15;
            assert!(
                d >= base && d <= base + 29 * (u64::from(n) + 1),
                "retry {n}: {d}s"
            );
        }
        assert_eq!(
            delay_before_retry(&cfg(BackoffPolicy::Sidekiq), 5, &mut rng),
            None
        );
    }

    #[test]
    fn exponential_is_jittered_and_capped() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for n in 0..5u32 {
            for _ in 0..50 {
                let d = delay_before_retry(&cfg(BackoffPolicy::Exponential), n, &mut rng)
                    .unwrap()
                    .as_millis() as u64;
                assert!(d <= (1000u64 << n).min(10_000));
            }
        }
    }

    #[test]
    fn fixed_repeats_the_last_and_none_is_immediate() {
        let mut rng = rand::rng();
        let f = cfg(BackoffPolicy::Fixed);
        let got: Vec<u64> = (0..4)
            .map(|n| delay_before_retry(&f, n, &mut rng).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(got, vec![100, 200, 200, 200]);
        assert_eq!(
            delay_before_retry(&cfg(BackoffPolicy::None), 0, &mut rng),
            Some(Duration::ZERO)
        );
        let zero = RetryConfig {
            retries: 0,
            ..cfg(BackoffPolicy::None)
        };
        assert_eq!(delay_before_retry(&zero, 0, &mut rng), None);
    }

    #[test]
    fn retry_after_seconds_and_dates_are_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
        let max = Duration::from_secs(60);
        assert_eq!(retry_after("5", now, max), Some(Duration::from_secs(5)));
        assert_eq!(retry_after("3600", now, max), Some(max));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now, max),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now, max),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now, max), None);
    }
}
