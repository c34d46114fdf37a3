//! The drain of a Bridge being deleted, as pure functions: what its pool's workers report
//! is left, when the drain ends, and the status meanwhile. The Bridge reconciler applies
//! the result (status, Events, finalizer removal); see `docs/deletion.md`.
//!
//! The states: a Bridge with a deletion timestamp and the operator's finalizer is
//! `Draining` (its pool renders it `draining`: 410 Gone for new events, queued jobs keep
//! going). It leaves that state, and the finalizer goes, when
//! - its policy is `Discard` ([`DrainEnd::Discarded`]),
//! - its pool is gone or going (nothing can deliver any more: [`DrainEnd::PoolGone`]),
//! - every worker reporting on the draining config counts 0 jobs left ([`DrainEnd::Drained`]),
//! - the deadline (deletion timestamp + `drainTimeout`) has passed ([`DrainEnd::TimedOut`]),
//!   whatever the workers say or fail to say: an unreachable worker never wedges a deletion.

use std::time::Duration;

use causeway_crds::bridge::{
    DEFAULT_DRAIN_TIMEOUT, DeletionPolicy, DeletionStatus, PHASE_DRAINING,
};
use causeway_crds::common::{condition, make_condition, reason, set_condition};
use causeway_crds::config::ObjectKey;
use causeway_crds::pool::StorageType;
use causeway_crds::{Bridge, BridgeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use super::PoolObservation;

/// Why a drain is over (the finalizer may go).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainEnd {
    /// `spec.deletion.policy: Discard`.
    Discarded,
    /// The pool is gone or being deleted.
    PoolGone,
    /// No job left.
    Drained,
    /// The deadline passed with this many jobs left (`None`: no worker said).
    TimedOut { left: Option<u64> },
}

/// What the reconciler does with a Bridge being deleted.
#[derive(Clone, Debug, PartialEq)]
pub enum DrainStep {
    /// Keep draining: write `status` when it differs, and look again within `recheck`.
    Wait {
        status: Box<BridgeStatus>,
        recheck: Duration,
    },
    /// Remove the finalizer.
    End(DrainEnd),
}

/// When the drain of `bridge` gives up: its deletion timestamp plus its drain timeout
/// (the default when unset or invalid). `None` for a Bridge not being deleted.
pub fn deadline(bridge: &Bridge) -> Option<Time> {
    let deleted = bridge.metadata.deletion_timestamp.as_ref()?;
    let timeout = bridge.spec.deletion.drain_timeout().unwrap_or_else(|| {
        causeway_crds::duration::parse_duration(DEFAULT_DRAIN_TIMEOUT)
            .unwrap_or(Duration::from_secs(300))
    });
    let timeout = SignedDuration::try_from(timeout).unwrap_or(SignedDuration::MAX);
    Some(Time(
        deleted.0.checked_add(timeout).unwrap_or(Timestamp::MAX),
    ))
}

/// Jobs left for `key` according to the pool's workers, when every worker that reported
/// runs the bridge draining (only then is it counted): summed over embedded stores (each
/// worker its own), the largest over a shared store (each sees the pool's queue). `None`
/// when no worker reported, or one still runs a config where the bridge is not draining.
pub fn jobs_left(obs: Option<&PoolObservation>, key: &ObjectKey) -> Option<u64> {
    let obs = obs?;
    let mut counts = Vec::new();
    for pod in &obs.pods {
        if !matches!(pod.report, Some(Ok(_))) {
            continue;
        }
        counts.push(pod.bridge_report(key).and_then(|b| b.jobs_left)?);
    }
    if counts.is_empty() {
        return None;
    }
    Some(match obs.store {
        Some(StorageType::Postgres) => counts.into_iter().max().unwrap_or(0),
        _ => counts.into_iter().sum(),
    })
}

/// The next step of the drain of `bridge` (which has a deletion timestamp). `pool_live`
/// is false when its pool does not exist or is being deleted; `recheck` is how often to
/// look again while nothing wakes the reconciler.
pub fn drain_step(
    bridge: &Bridge,
    pool_live: bool,
    obs: Option<&PoolObservation>,
    now: &Time,
    recheck: Duration,
) -> DrainStep {
    if bridge.spec.deletion.policy == DeletionPolicy::Discard {
        return DrainStep::End(DrainEnd::Discarded);
    }
    if !pool_live {
        return DrainStep::End(DrainEnd::PoolGone);
    }
    let key = ObjectKey::new(bridge.namespace().unwrap_or_default(), bridge.name_any());
    let left = jobs_left(obs, &key);
    if left == Some(0) {
        return DrainStep::End(DrainEnd::Drained);
    }
    let previous = bridge.status.clone().unwrap_or_default();
    let before = previous.deletion.as_ref();
    let last_known = left.or(before.and_then(|d| d.pending_jobs));
    let Some(deadline) = deadline(bridge) else {
        // Not being deleted: nothing to drain (the caller does not ask then).
        return DrainStep::End(DrainEnd::Drained);
    };
    if now.0 >= deadline.0 {
        return DrainStep::End(DrainEnd::TimedOut { left: last_known });
    }
    let mut conditions = previous.conditions.clone();
    set_condition(
        &mut conditions,
        make_condition(
            condition::READY,
            false,
            reason::DRAINING,
            format!(
                "being deleted: new events get 410 Gone while the queued jobs drain, until {}",
                deadline.0
            ),
            bridge.metadata.generation,
            now.clone(),
            &previous.conditions,
        ),
    );
    let until = deadline.0.duration_since(now.0);
    let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
    // The count changes with every delivery, and each status write wakes the pool, which
    // asks the workers again: rewritten at most once per `recheck`, or a busy drain would
    // write many times a second.
    let (pending_jobs, counted_at) = match before {
        Some(d) if d.pending_jobs.is_some() && d.pending_jobs != last_known => {
            let fresh = d.counted_at.as_ref().is_some_and(|at| {
                now.0.duration_since(at.0) < SignedDuration::try_from(recheck).unwrap_or_default()
            });
            if fresh {
                (d.pending_jobs, d.counted_at.clone())
            } else {
                (last_known, Some(now.clone()))
            }
        }
        Some(d) if d.pending_jobs == last_known => (last_known, d.counted_at.clone()),
        _ => (last_known, last_known.map(|_| now.clone())),
    };
    DrainStep::Wait {
        status: Box::new(BridgeStatus {
            conditions,
            deletion: Some(DeletionStatus {
                phase: PHASE_DRAINING.into(),
                pending_jobs,
                deadline: Some(deadline),
                counted_at,
            }),
            ..previous
        }),
        // Wake at the deadline at the latest (plus a second: the API server keeps seconds).
        recheck: recheck.min(until + Duration::from_secs(1)),
    }
}

/// The Event of a drain's end: (warning, reason, note).
pub fn end_event(bridge: &Bridge, end: &DrainEnd) -> (bool, &'static str, String) {
    let timeout = bridge
        .spec
        .deletion
        .drain_timeout
        .as_deref()
        .unwrap_or(DEFAULT_DRAIN_TIMEOUT);
    match end {
        DrainEnd::Discarded => (
            false,
            "Discarded",
            "deleted with policy Discard: its queued jobs are dead-lettered".into(),
        ),
        DrainEnd::PoolGone => (
            false,
            "PoolGone",
            "deleted: its pool is gone or going, nothing left to drain through".into(),
        ),
        DrainEnd::Drained => (
            false,
            "Drained",
            "deleted: every queued job was delivered or finished".into(),
        ),
        DrainEnd::TimedOut { left: Some(n) } => (
            true,
            "DrainTimedOut",
            format!("drain timeout {timeout} passed: {n} queued jobs discarded (dead-lettered)"),
        ),
        DrainEnd::TimedOut { left: None } => (
            true,
            "DrainTimedOut",
            format!(
                "drain timeout {timeout} passed with no worker reporting: its queued jobs, if any, are discarded (dead-lettered)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use causeway_crds::BridgeSpec;
    use kube::core::ObjectMeta;

    use super::super::{BridgeReport, PodObservation, WorkerReport};
    use super::*;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    const DELETED_AT: i64 = 1_000_000;

    fn deleting(deletion: serde_json::Value) -> Bridge {
        let spec: BridgeSpec = serde_json::from_value(serde_json::json!({
            "destinations": [{"name": "d", "url": "http://127.0.0.1:1/"}],
            "deletion": deletion,
        }))
        .unwrap();
        Bridge {
            metadata: ObjectMeta {
                name: Some("orders".into()),
                namespace: Some("shop".into()),
                generation: Some(2),
                deletion_timestamp: Some(t(DELETED_AT)),
                finalizers: Some(vec![causeway_crds::common::BRIDGE_FINALIZER.into()]),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    /// A pod whose report has `orders` with `jobs_left` (None: not draining there).
    fn pod(name: &str, jobs_left: Option<u64>) -> PodObservation {
        PodObservation {
            name: name.into(),
            ip: Some("127.0.0.2".into()),
            ready: true,
            report: Some(Ok(WorkerReport {
                bridges: vec![BridgeReport {
                    namespace: "shop".into(),
                    name: "orders".into(),
                    jobs_left,
                    ..BridgeReport::default()
                }],
                ..WorkerReport::default()
            })),
            index: Default::default(),
        }
        .indexed()
    }

    fn obs(store: StorageType, pods: Vec<PodObservation>) -> PoolObservation {
        PoolObservation {
            namespace: "shop".into(),
            pool: "default".into(),
            store: Some(store),
            pods,
            ..PoolObservation::default()
        }
    }

    const RECHECK: Duration = Duration::from_secs(5);

    #[test]
    fn the_deadline_is_the_deletion_plus_the_drain_timeout() {
        assert_eq!(
            deadline(&deleting(serde_json::json!({}))),
            Some(t(DELETED_AT + 300)),
            "default 5m"
        );
        assert_eq!(
            deadline(&deleting(serde_json::json!({"drainTimeout": "1h30m"}))),
            Some(t(DELETED_AT + 5400))
        );
        let mut live = deleting(serde_json::json!({}));
        live.metadata.deletion_timestamp = None;
        assert_eq!(deadline(&live), None);
    }

    #[test]
    fn jobs_left_sum_over_embedded_stores_and_the_largest_over_a_shared_one() {
        let key = ObjectKey::new("shop", "orders");
        let two = vec![pod("a", Some(3)), pod("b", Some(4))];
        assert_eq!(
            jobs_left(Some(&obs(StorageType::Embedded, two.clone())), &key),
            Some(7)
        );
        assert_eq!(
            jobs_left(Some(&obs(StorageType::Postgres, two)), &key),
            Some(4)
        );
        // A worker still on the config before the deletion: not known yet.
        let behind = vec![pod("a", Some(0)), pod("b", None)];
        assert_eq!(
            jobs_left(Some(&obs(StorageType::Postgres, behind)), &key),
            None
        );
        // A worker that does not answer does not count; none at all: unknown.
        let mut unreachable = pod("b", None);
        unreachable.report = Some(Err("connection refused".into()));
        let mut starting = pod("c", None);
        starting.report = None;
        assert_eq!(
            jobs_left(
                Some(&obs(
                    StorageType::Embedded,
                    vec![pod("a", Some(2)), unreachable.clone(), starting]
                )),
                &key
            ),
            Some(2)
        );
        assert_eq!(
            jobs_left(Some(&obs(StorageType::Embedded, vec![unreachable])), &key),
            None
        );
        assert_eq!(jobs_left(None, &key), None);
    }

    #[test]
    fn draining_waits_with_progress_in_status_then_ends_when_nothing_is_left() {
        let b = deleting(serde_json::json!({"drainTimeout": "2m"}));
        let o = obs(StorageType::Embedded, vec![pod("a", Some(3))]);
        let DrainStep::Wait { status, recheck } =
            drain_step(&b, true, Some(&o), &t(DELETED_AT + 10), RECHECK)
        else {
            panic!("should wait");
        };
        assert_eq!(recheck, RECHECK);
        assert_eq!(
            status.deletion,
            Some(DeletionStatus {
                phase: "Draining".into(),
                pending_jobs: Some(3),
                deadline: Some(t(DELETED_AT + 120)),
                counted_at: Some(t(DELETED_AT + 10)),
            })
        );
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Draining")
        );
        assert!(ready.message.contains("410 Gone"), "{}", ready.message);

        // The same again: the same status, so nothing is written.
        let mut again = b.clone();
        again.status = Some(*status.clone());
        let DrainStep::Wait { status: same, .. } =
            drain_step(&again, true, Some(&o), &t(DELETED_AT + 15), RECHECK)
        else {
            panic!("should wait");
        };
        assert_eq!(same, status);

        // A new count within `recheck` of the last one is not written (no churn while a
        // backlog drains); after it, it is.
        let fewer = obs(StorageType::Embedded, vec![pod("a", Some(2))]);
        let DrainStep::Wait { status: kept, .. } =
            drain_step(&again, true, Some(&fewer), &t(DELETED_AT + 14), RECHECK)
        else {
            panic!("should wait");
        };
        assert_eq!(kept, status);
        let DrainStep::Wait { status: newer, .. } =
            drain_step(&again, true, Some(&fewer), &t(DELETED_AT + 15), RECHECK)
        else {
            panic!("should wait");
        };
        let d = newer.deletion.clone().unwrap();
        assert_eq!(
            (d.pending_jobs, d.counted_at),
            (Some(2), Some(t(DELETED_AT + 15)))
        );

        // Close to the deadline, it looks again right after it.
        let DrainStep::Wait { recheck, .. } =
            drain_step(&again, true, Some(&o), &t(DELETED_AT + 118), RECHECK)
        else {
            panic!("should wait");
        };
        assert_eq!(recheck, Duration::from_secs(3));

        let drained = obs(StorageType::Embedded, vec![pod("a", Some(0))]);
        assert_eq!(
            drain_step(&again, true, Some(&drained), &t(DELETED_AT + 20), RECHECK),
            DrainStep::End(DrainEnd::Drained)
        );
    }

    #[test]
    fn the_timeout_ends_it_with_the_last_count_even_when_no_worker_answers() {
        let b = deleting(serde_json::json!({"drainTimeout": "30s"}));
        let o = obs(StorageType::Embedded, vec![pod("a", Some(5))]);
        assert_eq!(
            drain_step(&b, true, Some(&o), &t(DELETED_AT + 30), RECHECK),
            DrainStep::End(DrainEnd::TimedOut { left: Some(5) })
        );
        // The worker went away: the count last written to status is what is reported.
        let DrainStep::Wait { status, .. } =
            drain_step(&b, true, Some(&o), &t(DELETED_AT + 1), RECHECK)
        else {
            panic!("should wait");
        };
        let mut b = b;
        b.status = Some(*status);
        let gone = obs(StorageType::Embedded, vec![]);
        assert!(matches!(
            drain_step(&b, true, Some(&gone), &t(DELETED_AT + 29), RECHECK),
            DrainStep::Wait { .. }
        ));
        let end = drain_step(&b, true, Some(&gone), &t(DELETED_AT + 31), RECHECK);
        assert_eq!(end, DrainStep::End(DrainEnd::TimedOut { left: Some(5) }));
        let DrainStep::End(end) = end else {
            unreachable!()
        };
        assert_eq!(
            end_event(&b, &end),
            (
                true,
                "DrainTimedOut",
                "drain timeout 30s passed: 5 queued jobs discarded (dead-lettered)".into()
            )
        );
        // Never any report: still ends, and says it does not know.
        let fresh = deleting(serde_json::json!({"drainTimeout": "30s"}));
        let end = drain_step(&fresh, true, None, &t(DELETED_AT + 60), RECHECK);
        assert_eq!(end, DrainStep::End(DrainEnd::TimedOut { left: None }));
        let DrainStep::End(end) = end else {
            unreachable!()
        };
        let (warning, _, note) = end_event(&fresh, &end);
        assert!(warning && note.contains("no worker reporting"), "{note}");
    }

    #[test]
    fn discard_and_a_gone_pool_end_at_once() {
        let b = deleting(serde_json::json!({"policy": "Discard"}));
        let o = obs(StorageType::Embedded, vec![pod("a", Some(5))]);
        assert_eq!(
            drain_step(&b, true, Some(&o), &t(DELETED_AT), RECHECK),
            DrainStep::End(DrainEnd::Discarded)
        );
        assert!(!end_event(&b, &DrainEnd::Discarded).0);
        let b = deleting(serde_json::json!({}));
        assert_eq!(
            drain_step(&b, false, Some(&o), &t(DELETED_AT), RECHECK),
            DrainStep::End(DrainEnd::PoolGone)
        );
    }
}
