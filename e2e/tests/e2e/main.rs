//! The end-to-end scenarios of issue 7, against a real kube-apiserver with etcd and
//! kube-controller-manager (`make e2e-up`), or a real cluster (`E2E_EXTERNAL=1`); see
//! docs/e2e.md. Each test works in its own namespace and dumps objects and logs when it
//! fails.
//!
//! | scenario | module |
//! |---|---|
//! | chart: helm lint, helm template, server-side dry run | `chart` |
//! | 1 helm install, operator Ready, CRDs, RBAC | `install` |
//! | 2 the examples: bridges Ready, webhooks arrive templated | `examples` |
//! | 3 invalid objects refused by CEL rules | `validation` |
//! | 4 editing a Bridge changes behaviour live, no pod restart | `live_edit` |
//! | 5 selective deployment, moving a plugin, the namespace token | `selective` |
//! | 6 SIGKILL a worker under load: nothing acknowledged is lost | `crash` |
//! | 7 wrong digest, missing Secret: reasons in `kubectl get` | `conditions` |
//! | 8 restart the operator mid-reconcile: converges, no duplicates | `operator_restart` |
//! | 9 delete a Bridge (404), delete a pool (garbage collected) | `deletion` |
//! | 10 a postgres pool of 3: a pod deleted under load loses nothing; `kubectl get wpool` shows the store | `postgres` |
//! | 11 a worker OOM-killed by its memory limit: restarted, nothing acknowledged lost (real node) | `oom` |
//! | 12 a cross-pool call through the pool's ClusterIP Service, resolved by cluster DNS (real node) | `dns` |
//! | 17 a Bridge's schema ConfigMap: `ConfigMapNotFound` until it exists, then 202 and 422 | `event_apis` |
//! | 18 a deleted Bridge drains (410, progress in status, delivered, gone), times out with a Warning, or is discarded | `deletion` |

mod chart;
mod conditions;
mod console;
mod crash;
mod deletion;
mod dns;
mod event_apis;
mod examples;
mod install;
mod live_edit;
mod oom;
mod operator_restart;
mod postgres;
mod selective;
mod validation;

use anyhow::Result;

/// A WorkerPool manifest.
pub fn pool(name: &str) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {{name: {name}}}\nspec: {{replicas: 1}}\n"
    )
}

/// `kubectl get <what> -n ns -o name` as a list.
pub fn names(ns: &str, what: &str, selector: &str) -> Result<Vec<String>> {
    let mut args = vec!["get", what, "-n", ns, "-o", "name"];
    if !selector.is_empty() {
        args.extend(["-l", selector]);
    }
    Ok(causeway_e2e::harness::kubectl(&args)?
        .ok()?
        .lines()
        .map(str::to_string)
        .collect())
}
