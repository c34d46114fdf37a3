//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas are safe: only
//! the holder runs the controllers; the other waits, and takes over once the lease has not
//! been renewed for its duration.
//!
//! Writes are optimistic: a renewal or take-over is a server-side apply that carries the
//! `resourceVersion` it read, so of two contenders one gets 409 and backs off. The first
//! creation is a plain create for the same reason.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::builders::FIELD_MANAGER;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("lease {name}: {source}")]
    Api { name: String, source: kube::Error },
    #[error("lease {name} lost: another replica holds it or it could not be renewed in time")]
    Lost { name: String },
}

/// What to do with the lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Take { transitions: i32 },
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and renewed it in time.
    Wait { holder: String },
}

/// Pure decision from the lease's spec.
pub fn decide(
    spec: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    default_duration: i32,
) -> Decision {
    let Some(spec) = spec else {
        return Decision::Take { transitions: 0 };
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0);
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take {
            transitions: transitions + 1,
        };
    }
    let duration = SignedDuration::from_secs(i64::from(
        spec.lease_duration_seconds.unwrap_or(default_duration),
    ));
    match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(t) if t.0 + duration > now => Decision::Wait { holder },
        _ => Decision::Take {
            transitions: transitions + 1,
        },
    }
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    duration: Duration,
    renew_every: Duration,
    retry_every: Duration,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            retry_every: Duration::from_secs(2),
        }
    }

    fn err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            name: self.name.clone(),
            source,
        }
    }

    /// One attempt to take or renew; `Ok(false)` when someone else holds the lease.
    pub async fn try_acquire(&self) -> Result<bool, LeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let now = Timestamp::now();
        let duration_secs = i32::try_from(self.duration.as_secs()).unwrap_or(15);
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let (acquire_time, transitions) = match decide(spec, &self.identity, now, duration_secs) {
            Decision::Wait { holder } => {
                tracing::debug!(lease = %self.name, %holder, "lease held by another replica");
                return Ok(false);
            }
            Decision::Renew => (
                spec.and_then(|s| s.acquire_time.clone())
                    .unwrap_or(MicroTime(now)),
                spec.and_then(|s| s.lease_transitions).unwrap_or(0),
            ),
            Decision::Take { transitions } => (MicroTime(now), transitions),
        };
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(acquire_time),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        };
        let result = if current.is_none() {
            let pp = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            self.api.create(&pp, &lease).await.map(|_| ())
        } else {
            self.api
                .patch(
                    &self.name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&lease),
                )
                .await
                .map(|_| ())
        };
        match result {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Wait until this replica holds the lease.
    pub async fn acquire(&self) -> Result<(), LeaseError> {
        tracing::info!(lease = %self.name, namespace = %self.namespace, identity = %self.identity, "waiting for leadership");
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.retry_every).await;
        }
    }

    /// Renew until the lease is lost; returns why. The caller must then stop reconciling.
    pub async fn hold(&self) -> LeaseError {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_every).await;
            match self.try_acquire().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    return LeaseError::Lost {
                        name: self.name.clone(),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    // Stop before another replica may take over (a renewal period early).
                    if last_renewed.elapsed() + self.renew_every >= self.duration {
                        return LeaseError::Lost {
                            name: self.name.clone(),
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_transitions: Some(3),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1000).unwrap();
        assert_eq!(
            decide(None, "me", now, 15),
            Decision::Take { transitions: 0 }
        );
        assert_eq!(
            decide(Some(&spec("me", 990)), "me", now, 15),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec("other", 990)), "me", now, 15),
            Decision::Wait {
                holder: "other".into()
            }
        );
        assert_eq!(
            decide(Some(&spec("other", 980)), "me", now, 15),
            Decision::Take { transitions: 4 }
        );
        assert_eq!(
            decide(Some(&spec("", 999)), "me", now, 15),
            Decision::Take { transitions: 4 }
        );
    }
}
