//! Delivery: a scheduler that sleeps until the next due job (or until woken), and one task
//! per attempt.
//!
//! A job is claimed through [`crate::store::Store::claim_due`]: the embedded store claims
//! in memory (its due queue, `store/memory.rs`; a crash forgets the claim, so the job, still
//! queued on disk, is attempted again after a restart: at-least-once), PostgreSQL leases.
//! The event comes from [`crate::store::Store::event_for_delivery`] (from memory for an
//! event just stored). After the call, the attempt, the job's new state and the event's
//! status are written in one transaction (on the embedded store without an fsync of its
//! own: it becomes durable with the next ingest's commit).
//!
//! - [`scheduler`]: finds due jobs and starts attempts, bounded by `max_inflight`;
//! - [`attempt`]: one attempt of one destination job, and what follows it;
//! - [`client`]: the call itself, over HTTP or to a plugin in-process;
//! - [`breaker`]: the destinations' circuit breakers;
//! - [`dead_letter`]: telling a destination's dead-letter URL;
//! - [`nats`]: NATS JetStream destinations (`nats://host:port/subject`);
//! - [`notify`]: a bridge's operational webhooks (`spec.notifications`);
//! - [`limits`]: per-destination concurrency and rate;
//! - [`oauth2`]: bearer tokens of destinations with OAuth2 client credentials;
//! - [`retry`]: the retry policies;
//! - [`tls`]: the destinations' HTTP clients (a private CA, client certificates);
//! - [`window`]: each destination's last hour, for the admin report and Bridge status;
//! - [`handle`]: what other stages may ask of delivery.
//!
//! Steps jobs are run by the steps stage ([`crate::steps`]).

pub mod attempt;
pub mod breaker;
pub mod client;
pub mod dead_letter;
pub mod handle;
pub mod limits;
pub mod nats;
pub mod notify;
pub mod oauth2;
pub mod retry;
pub mod scheduler;
pub mod tls;
pub mod window;

pub use scheduler::run;

#[cfg(test)]
mod tests {
    use super::client::internal_target;
    use super::*;

    #[test]
    fn internal_hosts_are_plugins() {
        let (t, p) = internal_target("http://inbox.internal/orders?x=1", "default").unwrap();
        assert_eq!((t.name.as_str(), p.as_str()), ("inbox", "/orders?x=1"));
        assert!(internal_target("http://127.0.0.1:9/x", "default").is_none());
        assert!(internal_target("https://api.example.com/internal", "default").is_none());
        // Issue 13 item 5: a real host whose name ends in .internal is not a plugin.
        assert!(internal_target("https://api.corp.internal/orders", "default").is_none());
    }

    #[test]
    fn token_bucket_refuses_past_the_burst() {
        let mut b = limits::TokenBucket::new(1, 2);
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_ok());
        assert!(b.try_take().is_err());
    }
}
