//! The chart on its own: `helm lint`, `helm template` with every optional part on, and
//! the rendered objects accepted by the real API server (server-side dry run).

use anyhow::{ensure, Context, Result};
use causeway_e2e::harness::{helm, kubectl_stdin, Stack, TestNs};
use serde::Deserialize;

const CHART: &str = "charts/causeway";

#[tokio::test]
async fn helm_lint_passes_strict() -> Result<()> {
    let out = helm(&["lint", "--strict", CHART])?;
    ensure!(out.success(), "helm lint --strict failed:\n{}\n{}", out.stdout, out.stderr);
    let out = helm(&["lint", "--strict", CHART, "--set", "networkPolicy.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"])?;
    ensure!(out.success(), "helm lint --strict (all options) failed:\n{}\n{}", out.stdout, out.stderr);
    Ok(())
}

#[tokio::test]
async fn values_schema_refuses_bad_values() -> Result<()> {
    for (set, why) in [
        ("log.level=loud", "log.level enum"),
        ("image.pullPolicy=Sometimes", "pullPolicy enum"),
        ("defaultPool.storageSize=lots", "storage size pattern"),
        ("nonsense=1", "unknown top-level value"),
    ] {
        let out = helm(&["template", "x", CHART, "--set", set])?;
        ensure!(!out.success(), "helm template accepted {set} ({why})");
        ensure!(out.stderr.contains("values don't meet the specifications of the schema"), "{set}: {}", out.stderr);
    }
    Ok(())
}

#[tokio::test]
async fn helm_template_renders_every_part_and_the_server_accepts_it() -> Result<()> {
    let ns = TestNs::new("chart").await?;
    let out = helm(&[
        "template", "e2e-dryrun", CHART, "--namespace", &ns.name, "--include-crds",
        "--set", "networkPolicy.enabled=true",
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "replicas=2",
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
        "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "Service", "Deployment", "NetworkPolicy", "ServiceMonitor", "PodMonitor",
    ] {
        ensure!(kinds.iter().any(|k| k == want), "helm template rendered no {want}; kinds: {kinds:?}");
    }
    ensure!(out.contains("--leader-election"), "two replicas need leader election");
    let stream = for_server.join("\n---\n");
    let dry = kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &stream)?;
    ensure!(dry.success(), "the API server refused the rendered chart:\n{}", dry.stderr);
    Stack::get()?;
    ns.pass();
    Ok(())
}
