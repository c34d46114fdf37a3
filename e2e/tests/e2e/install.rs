//! Scenario 1: `helm install` (done by `make e2e-up`, or by you on a real cluster), the
//! operator becomes Ready running with the chart's ServiceAccount, `kubectl get crd`
//! shows the three CRDs, structural and with their CEL rules compiled, identical to the
//! chart's files; the chart's RBAC grants what the operator needs and no more.

use anyhow::{Context, Result, bail, ensure};
use causeway_e2e::harness::{
    READY_TIMEOUT, Stack, container_pid, eventually, helm, kubectl, pod_ready,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const CRDS: [&str; 3] = [
    "bridges.causeway.dev",
    "plugins.causeway.dev",
    "workerpools.causeway.dev",
];

fn operator_sa(stack: &Stack) -> String {
    format!(
        "system:serviceaccount:{}:{}-operator",
        stack.release_ns, stack.release
    )
}

#[tokio::test]
async fn s1_helm_release_deployed_and_operator_ready() -> Result<()> {
    let stack = Stack::get()?;
    let client = stack.client().await?;
    let status = helm(&[
        "status",
        &stack.release,
        "-n",
        &stack.release_ns,
        "-o",
        "json",
    ])?
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    ensure!(
        v["info"]["status"] == "deployed",
        "helm release {} is {}",
        stack.release,
        v["info"]["status"]
    );
    let notes = v["info"]["notes"].as_str().unwrap_or_default();
    ensure!(
        notes.contains("kubectl get crd") && notes.contains("apply"),
        "NOTES.txt should say what to apply next: {notes}"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), &stack.release_ns);
    let selector = format!(
        "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
        stack.release
    );
    let pod = eventually("a Ready operator pod", READY_TIMEOUT, || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        Ok(list.into_iter().find(pod_ready))
    })
    .await?;
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_default();
    ensure!(
        sa == format!("{}-operator", stack.release),
        "operator pod runs as {sa}"
    );

    // On the local node the operator is a container: the image's user (non-root), a
    // read-only root file system, and the token the kubelet mounted authenticates as the
    // chart's ServiceAccount.
    if stack.node.is_some() {
        let pid = container_pid(stack, &stack.release_ns, &pod.name_any(), "operator")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_default();
        ensure!(uid == "65532", "the operator container runs as uid {uid}");
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root = mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/"))
            .context("no / in the operator's mountinfo")?;
        ensure!(
            root.split_whitespace()
                .nth(5)
                .is_some_and(|o| o.split(',').any(|o| o == "ro")),
            "the operator's root file system is not read-only: {root}"
        );
        let token = std::fs::read_to_string(format!(
            "/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/token"
        ))
        .context("the operator's ServiceAccount token")?;
        let server = kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])?
        .ok()?;
        let ca = std::fs::read_to_string(format!(
            "/proc/{pid}/root/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        ))?;
        let ca_file = std::env::temp_dir().join(format!("e2e-operator-ca-{pid}.crt"));
        std::fs::write(&ca_file, ca)?;
        let who = kubectl(&[
            "auth",
            "whoami",
            "--kubeconfig=/dev/null",
            &format!("--server={server}"),
            &format!("--certificate-authority={}", ca_file.display()),
            &format!("--token={}", token.trim()),
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])?
        .ok();
        let _ = std::fs::remove_file(&ca_file);
        let who = who?;
        ensure!(
            who == operator_sa(stack),
            "the operator's token authenticates as {who}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn s1_three_crds_established_structural_and_as_in_the_chart() -> Result<()> {
    let stack = Stack::get()?;
    let list = kubectl(&["get", "crd"])?.ok()?;
    for crd in CRDS {
        ensure!(
            list.contains(crd),
            "kubectl get crd does not show {crd}:\n{list}"
        );
        let json = kubectl(&["get", "crd", crd, "-o", "json"])?.ok()?;
        let v: serde_json::Value = serde_json::from_str(&json)?;
        let conds = v["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let status = |t: &str| {
            conds
                .iter()
                .find(|c| c["type"] == t)
                .and_then(|c| c["status"].as_str())
                .unwrap_or("absent")
                .to_string()
        };
        ensure!(
            status("Established") == "True",
            "{crd} not Established: {conds:?}"
        );
        ensure!(
            status("NamesAccepted") == "True",
            "{crd} names not accepted: {conds:?}"
        );
        ensure!(
            status("NonStructuralSchema") != "True",
            "{crd} has a non-structural schema: {conds:?}"
        );
        let rules = json.matches("x-kubernetes-validations").count();
        ensure!(rules > 0, "{crd} carries no CEL rules");
    }
    // What the server holds is what the chart ships (and crdgen wrote).
    let diff = kubectl(&[
        "diff",
        "-f",
        &stack.repo.join("charts/causeway/crds").to_string_lossy(),
    ])?;
    match diff.code {
        Some(0) => Ok(()),
        Some(1) => bail!(
            "the cluster's CRDs differ from charts/causeway/crds:\n{}",
            diff.stdout
        ),
        _ => bail!("kubectl diff failed: {}", diff.stderr),
    }
}

#[tokio::test]
async fn s1_chart_rbac_grants_what_the_operator_needs_and_no_more() -> Result<()> {
    let stack = Stack::get()?;
    let who = operator_sa(stack);
    let can = |args: &[&str]| -> Result<bool> {
        let mut full = vec!["auth", "can-i", "--as", who.as_str()];
        full.extend_from_slice(args);
        let out = kubectl(&full)?;
        Ok(out.stdout.trim() == "yes")
    };
    let rel = stack.release_ns.as_str();
    let allowed: &[&[&str]] = &[
        &["watch", "workerpools.causeway.dev", "-A"],
        &[
            "patch",
            "bridges.causeway.dev",
            "--subresource=status",
            "-n",
            "any",
        ],
        &[
            "patch",
            "plugins.causeway.dev",
            "--subresource=status",
            "-n",
            "any",
        ],
        &["create", "workerpools.causeway.dev", "-n", "any"],
        // Its finalizer on Bridges (issue 18).
        &["patch", "bridges.causeway.dev", "-n", "any"],
        &["patch", "deployments.apps", "-n", "any"],
        &["delete", "deployments.apps", "-n", "any"],
        &["patch", "services", "-n", "any"],
        &["patch", "secrets", "-n", "any"],
        &["patch", "roles.rbac.authorization.k8s.io", "-n", "any"],
        &[
            "patch",
            "rolebindings.rbac.authorization.k8s.io",
            "-n",
            "any",
        ],
        &["patch", "persistentvolumeclaims", "-n", "any"],
        &["patch", "poddisruptionbudgets.policy", "-n", "any"],
        &["patch", "horizontalpodautoscalers.autoscaling", "-n", "any"],
        &["watch", "pods", "-A"],
        &["watch", "replicasets.apps", "-A"],
        &["patch", "networkpolicies.networking.k8s.io", "-n", "any"],
        &["create", "events.events.k8s.io", "-n", "any"],
        &["patch", "leases.coordination.k8s.io", "-n", rel],
    ];
    let denied: &[&[&str]] = &[
        &["create", "pods", "-n", "any"],
        &["create", "pods", "--subresource=exec", "-n", "any"],
        &["delete", "nodes"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["create", "clusterrolebindings.rbac.authorization.k8s.io"],
        &["escalate", "roles.rbac.authorization.k8s.io", "-n", "any"],
        &["bind", "clusterroles.rbac.authorization.k8s.io"],
        &["impersonate", "serviceaccounts", "-n", "any"],
        &[
            "create",
            "serviceaccounts",
            "--subresource=token",
            "-n",
            "any",
        ],
        &["update", "leases.coordination.k8s.io", "-n", "kube-system"],
        &["delete", "customresourcedefinitions.apiextensions.k8s.io"],
        &["delete", "workerpools.causeway.dev", "-n", "any"],
        &["delete", "bridges.causeway.dev", "-n", "any"],
        &["patch", "plugins.causeway.dev", "-n", "any"],
    ];
    let mut wrong = Vec::new();
    for a in allowed {
        if !can(a)? {
            wrong.push(format!("denied but needed: {}", a.join(" ")));
        }
    }
    for d in denied {
        if can(d)? {
            wrong.push(format!("allowed but not needed: {}", d.join(" ")));
        }
    }
    ensure!(
        wrong.is_empty(),
        "chart RBAC for {who}:\n{}",
        wrong.join("\n")
    );
    Ok(())
}
