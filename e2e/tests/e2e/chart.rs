//! The chart on its own: `helm lint`, `helm template` with every optional part on, and
//! the rendered objects accepted by the real API server (server-side dry run).

use anyhow::{Context, Result, ensure};
use causeway_e2e::harness::{Stack, TestNs, helm, kubectl_stdin};
use serde::Deserialize;

const CHART: &str = "charts/causeway";

#[tokio::test]
async fn helm_lint_passes_strict() -> Result<()> {
    let out = helm(&["lint", "--strict", CHART])?;
    ensure!(
        out.success(),
        "helm lint --strict failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    let out = helm(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "defaultPool.postgresUrlSecret=causeway-postgres",
    ])?;
    ensure!(
        out.success(),
        "helm lint --strict (all options) failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn values_schema_refuses_bad_values() -> Result<()> {
    for (set, why) in [
        ("log.level=loud", "log.level enum"),
        ("image.pullPolicy=Sometimes", "pullPolicy enum"),
        ("defaultPool.storageSize=lots", "storage size pattern"),
        (
            "defaultPool.postgresUrlSecret=Bad_Name",
            "postgres Secret name pattern",
        ),
        ("nonsense=1", "unknown top-level value"),
        ("priorityClassName=Bad_Name", "priority class name pattern"),
        ("podDisruptionBudget.minAvailable=0", "a budget of nobody"),
        (
            "serviceAccount.name=Bad_Name",
            "service account name pattern",
        ),
        ("scale.reconcileConcurrency=0", "no reconciles at all"),
        ("scale.renderBatchMs=-1", "a negative render window"),
        (
            "scale.renderBatchMs=fast",
            "a render window that is not a number",
        ),
    ] {
        let out = helm(&["template", "x", CHART, "--set", set])?;
        ensure!(!out.success(), "helm template accepted {set} ({why})");
        ensure!(
            out.stderr
                .contains("values don't meet the specifications of the schema"),
            "{set}: {}",
            out.stderr
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_template_renders_every_part_and_the_server_accepts_it() -> Result<()> {
    let ns = TestNs::new("chart").await?;
    let out = helm(&[
        "template",
        "e2e-dryrun",
        CHART,
        "--namespace",
        &ns.name,
        "--include-crds",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "replicas=2",
    ])?
    .ok()?;
    let mut kinds = Vec::new();
    let mut for_server = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out) {
        let v = serde_json::Value::deserialize(doc).context("rendered YAML")?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        // The monitoring CRDs are not installed on the e2e control plane.
        if !matches!(kind.as_str(), "ServiceMonitor" | "PodMonitor") {
            for_server.push(serde_json::to_string(&v)?);
        }
        kinds.push(kind);
    }
    for want in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodMonitor",
        "PodDisruptionBudget",
    ] {
        ensure!(
            kinds.iter().any(|k| k == want),
            "helm template rendered no {want}; kinds: {kinds:?}"
        );
    }
    ensure!(
        out.contains("--leader-election"),
        "two replicas need leader election"
    );
    let stream = for_server.join("\n---\n");
    let dry = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &stream)?;
    ensure!(
        dry.success(),
        "the API server refused the rendered chart:\n{}",
        dry.stderr
    );
    Stack::get()?;
    ns.pass();
    Ok(())
}

/// Every rendered document of `helm template` with `sets`, as JSON.
fn rendered(sets: &[&str]) -> Result<Vec<serde_json::Value>> {
    let mut args = vec!["template", "x", CHART, "--namespace", "causeway-system"];
    for s in sets {
        args.extend(["--set", s]);
    }
    let out = helm(&args)?.ok()?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out) {
        let v = serde_json::Value::deserialize(doc).context("rendered YAML")?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn operator_args(docs: &[serde_json::Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// The operator's pacing at scale comes from `scale.*` (defaults: a 1 s render window, 16
/// reconciles at once), and its default memory limit holds 10,000 Bridges.
#[tokio::test]
async fn helm_template_passes_the_scale_values_to_the_operator() -> Result<()> {
    let docs = rendered(&[])?;
    let args = operator_args(&docs);
    for want in ["--render-batch-ms=1000", "--reconcile-concurrency=16"] {
        ensure!(args.iter().any(|a| a == want), "no {want} in {args:?}");
    }
    let limit = docs.iter().find(|d| d["kind"] == "Deployment").map(|d| {
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"].clone()
    });
    ensure!(limit == Some(serde_json::json!("512Mi")), "{limit:?}");

    let args = operator_args(&rendered(&[
        "scale.renderBatchMs=250",
        "scale.reconcileConcurrency=64",
    ])?);
    for want in ["--render-batch-ms=250", "--reconcile-concurrency=64"] {
        ensure!(args.iter().any(|a| a == want), "no {want} in {args:?}");
    }
    Ok(())
}

/// Issue 12 item 19: `watchNamespaces` gives Roles in those namespaces instead of the
/// cluster-wide ClusterRole, and the operator watches only them. Item 8: the operator is
/// told to write a NetworkPolicy per pool, with its own pod labels (and Prometheus' when
/// allowed), and may manage NetworkPolicies; item 17: it may read ReplicaSets.
#[tokio::test]
async fn helm_template_namespaced_install_and_worker_network_policy() -> Result<()> {
    let docs = rendered(&[])?;
    let cluster_role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .context("a ClusterRole by default")?;
    let rules = cluster_role["rules"].to_string();
    ensure!(
        rules.contains("networkpolicies") && rules.contains("replicasets"),
        "{rules}"
    );
    let args = operator_args(&docs);
    ensure!(
        args.iter().any(|a| a == "--worker-network-policy"),
        "{args:?}"
    );
    ensure!(
        args.iter().any(|a| a == "--operator-pod-labels=app.kubernetes.io/name=causeway,app.kubernetes.io/instance=x,app.kubernetes.io/component=operator"),
        "{args:?}"
    );
    ensure!(
        !args
            .iter()
            .any(|a| a.starts_with("--watch-namespaces") || a.starts_with("--prometheus")),
        "{args:?}"
    );

    let docs = rendered(&[
        "watchNamespaces={team-a,team-b}",
        "workerNetworkPolicy.allowPrometheus=true",
    ])?;
    ensure!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"),
        "no cluster-wide rights"
    );
    for ns in ["team-a", "team-b"] {
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == "Role"
                    && d["metadata"]["namespace"] == ns
                    && d["metadata"]["name"] == "x-operator"
            })
            .with_context(|| format!("a Role in {ns}"))?;
        ensure!(role["rules"].to_string().contains("secrets"), "{role}");
        let binding = docs
            .iter()
            .find(|d| {
                d["kind"] == "RoleBinding"
                    && d["metadata"]["namespace"] == ns
                    && d["roleRef"]["name"] == "x-operator"
            })
            .with_context(|| format!("a RoleBinding in {ns}"))?;
        ensure!(
            binding["subjects"][0]["namespace"] == "causeway-system",
            "{binding}"
        );
    }
    let args = operator_args(&docs);
    ensure!(
        args.iter().any(|a| a == "--watch-namespaces=team-a,team-b"),
        "{args:?}"
    );
    ensure!(
        args.iter()
            .any(|a| a == "--prometheus-pod-labels=app.kubernetes.io/name=prometheus"),
        "{args:?}"
    );

    let docs = rendered(&["worker.denyDestinationCidrs={10.0.0.0/8,fd00::/8}"])?;
    ensure!(
        operator_args(&docs)
            .iter()
            .any(|a| a == "--worker-deny-destination-cidrs=10.0.0.0/8,fd00::/8")
    );

    let docs = rendered(&["workerNetworkPolicy.enabled=false"])?;
    ensure!(
        !operator_args(&docs)
            .iter()
            .any(|a| a == "--worker-network-policy")
    );
    let bad = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "watchNamespaces={Not_A_Namespace}",
    ])?;
    ensure!(!bad.success(), "the schema refuses a bad namespace name");
    Ok(())
}

/// Issue 18, chart gaps: the standard labels on every object, a PodMonitor named per
/// release (two releases in one namespace must not fight over one name), a budget for the
/// operator only when it has a second replica, its placement knobs, and a ServiceAccount
/// the user manages (`serviceAccount.create=false`) that every binding then names.
#[tokio::test]
async fn helm_template_labels_budget_placement_and_service_account() -> Result<()> {
    let docs = rendered(&["metrics.serviceMonitor.enabled=true"])?;
    for d in &docs {
        ensure!(
            d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm",
            "{} {} has no managed-by label",
            d["kind"],
            d["metadata"]["name"]
        );
    }
    // The helm test's pod must never match the operator Deployment's selector (its
    // ReplicaSet would adopt it) nor the budget's.
    let hooks: Vec<_> = docs
        .iter()
        .filter(|d| d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .collect();
    ensure!(hooks.len() == 3, "WorkerPool, Bridge and Pod: {hooks:?}");
    for d in hooks {
        ensure!(
            d["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test",
            "{d}"
        );
    }
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "PodMonitor")
        .context("a PodMonitor")?;
    ensure!(monitor["metadata"]["name"] == "x-workers", "{monitor}");
    ensure!(
        !docs.iter().any(|d| d["kind"] == "PodDisruptionBudget"),
        "one replica gets no budget: it would block every node drain"
    );

    let docs = rendered(&[
        "replicas=3",
        "priorityClassName=system-cluster-critical",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ])?;
    let budget = docs
        .iter()
        .find(|d| d["kind"] == "PodDisruptionBudget")
        .context("a budget with three replicas")?;
    ensure!(budget["spec"]["minAvailable"] == 1, "{budget}");
    ensure!(
        budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator",
        "{budget}"
    );
    let pod = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("the operator")?["spec"]["template"]["spec"];
    ensure!(
        pod["priorityClassName"] == "system-cluster-critical",
        "{pod}"
    );
    ensure!(
        pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone",
        "{pod}"
    );
    ensure!(pod["serviceAccountName"] == "x-operator", "{pod}");

    let docs = rendered(&[
        "serviceAccount.create=false",
        "serviceAccount.name=platform-ops",
    ])?;
    ensure!(
        !docs.iter().any(|d| d["kind"] == "ServiceAccount"),
        "create=false renders no ServiceAccount"
    );
    let pod = &docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .context("the operator")?["spec"]["template"]["spec"];
    ensure!(pod["serviceAccountName"] == "platform-ops", "{pod}");
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .context("a ClusterRoleBinding")?;
    ensure!(
        binding["subjects"][0]["name"] == "platform-ops",
        "{binding}"
    );

    // Worker pods pull like the operator unless told otherwise.
    let args = operator_args(&rendered(&["imagePullSecrets[0].name=org-registry"])?);
    ensure!(
        args.iter()
            .any(|a| a == "--worker-image-pull-policy=IfNotPresent")
            && args
                .iter()
                .any(|a| a == "--worker-image-pull-secrets=org-registry"),
        "{args:?}"
    );
    let args = operator_args(&rendered(&[
        "imagePullSecrets[0].name=org-registry",
        "worker.imagePullSecrets[0].name=w1",
        "worker.imagePullSecrets[1].name=w2",
        "worker.imagePullPolicy=Always",
    ])?);
    ensure!(
        args.iter()
            .any(|a| a == "--worker-image-pull-policy=Always")
            && args
                .iter()
                .any(|a| a == "--worker-image-pull-secrets=w1,w2"),
        "{args:?}"
    );
    ensure!(
        !operator_args(&rendered(&[])?)
            .iter()
            .any(|a| a.starts_with("--worker-image-pull-secrets")),
        "no pull secrets: no flag"
    );

    let out = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "serviceAccount.create=false",
    ])?;
    ensure!(!out.success(), "create=false without a name must fail");
    ensure!(
        out.stderr.contains("serviceAccount.name is required"),
        "{}",
        out.stderr
    );
    Ok(())
}

/// Issue 18, chart gaps: `helm test` sends an event through a bridge (a pool and a bridge
/// of the test's own, `causeway send` from the release's image in a pod), and removes what
/// it made: the pool, the bridge, the pod, and the pool's claim.
#[tokio::test]
async fn helm_test_sends_an_event_through_a_bridge_and_cleans_up() -> Result<()> {
    let stack = Stack::get()?;
    let (release, ns) = (stack.release.clone(), stack.release_ns.clone());
    // The pod exits 0 only after a 2xx (`causeway send`); Helm deletes it on success
    // (hook-succeeded), so its log cannot be fetched afterwards.
    let out = helm(&["test", &release, "-n", &ns, "--timeout", "5m"])?;
    ensure!(
        out.success(),
        "helm test failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    ensure!(
        out.stdout.contains("Phase:          Succeeded") && !out.stdout.contains("Failed"),
        "the test did not succeed:\n{}",
        out.stdout
    );
    let name = format!("{release}-helm-test");
    causeway_e2e::harness::eventually(
        "what helm test made is gone",
        std::time::Duration::from_secs(120),
        || async {
            let mut left = Vec::new();
            for kind in ["workerpool", "bridge", "pod", "pvc"] {
                let what = if kind == "pvc" {
                    format!("causeway-{name}-data")
                } else {
                    name.clone()
                };
                if causeway_e2e::harness::kubectl(&["get", kind, &what, "-n", &ns])?.code == Some(0)
                {
                    left.push(format!("{kind}/{what}"));
                }
            }
            if left.is_empty() {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!("left: {left:?}"))
            }
        },
    )
    .await?;
    Ok(())
}
