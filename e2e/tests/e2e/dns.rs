//! Scenario 12: calls between pools go through the serving pool's ClusterIP Service,
//! resolved by cluster DNS. A bridge in pool `a` has a step that names a plugin placed in
//! pool `b`; with `worker.poolRouting: service` (what e2e/up.sh installs on a real node)
//! pool a's rendered config routes the plugin to `http://causeway-b-internal.<ns>.svc:8081`,
//! the worker resolves that name through CoreDNS (the pod's resolv.conf, written by the
//! kubelet) and kube-proxy's rules take the call to pool b's pod. The test checks the
//! rendered route, the Service's ClusterIP, the tagged body at the sink, and (on the local
//! node) CoreDNS's log of pool a's query for the name answered NOERROR.

use anyhow::{Context, Result, anyhow, ensure};
use causeway_crds::config::{INTERNAL_PORT, config_secret_name, internal_service_name};
use causeway_e2e::harness::http::{FileServer, Sink, post};
use causeway_e2e::harness::{
    DELIVERY_TIMEOUT, READY_TIMEOUT, Stack, TestNs, Want, eventually, ingress_url, kubectl, pod_ip,
    ready_pool_pod, wait_condition,
};

#[tokio::test]
async fn s12_a_cross_pool_plugin_call_goes_through_the_pool_service_resolved_by_cluster_dns()
-> Result<()> {
    let stack = Stack::get()?;
    let ns = TestNs::new("dns").await?;
    let client = stack.client().await?;
    let files = FileServer::plugins()?;
    let sink = Sink::start()?;
    ns.apply(&format!(
        "{}---\n{}---\napiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: tagger}}\nspec:\n  source: {}\n  pool: b\n  variables: [{{name: tag, value: dns}}]\n---\napiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: orders}}\nspec:\n  pool: a\n  steps: [{{plugin: tagger}}]\n  destinations: [{{name: out, url: \"{}\"}}]\n",
        crate::pool("a"),
        crate::pool("b"),
        files.source("tagger.wasm")?,
        sink.url("/tagged")
    ))?;
    for (kind, name) in [("Bridge", "orders"), ("Plugin", "tagger")] {
        wait_condition(&client, &ns.name, kind, name, Want::ready(), READY_TIMEOUT).await?;
    }
    let pod_a = ready_pool_pod(&client, &ns.name, "a").await?;
    let pod_b = ready_pool_pod(&client, &ns.name, "b").await?;

    // Pool a's config names pool b's internal Service, not pod b's address.
    let service = internal_service_name("b");
    let want = format!("http://{service}.{}.svc:{INTERNAL_PORT}", ns.name);
    let routes = eventually("pool a's route to tagger", READY_TIMEOUT, || async {
        let data = kubectl(&[
            "get",
            "secret",
            &config_secret_name("a"),
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.data.config\\.json}",
        ])?
        .ok()?;
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .context("config.json is not base64")?;
        let config: serde_json::Value = serde_json::from_slice(&json)?;
        let urls = config["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["plugin"] == "tagger")
            .map(|r| r["urls"].clone());
        match urls {
            Some(u) if u == serde_json::json!([want]) => Ok(Some(u)),
            other => Err(anyhow!("route to tagger: {other:?}, want [{want}]")),
        }
    })
    .await?;
    let cluster_ip = kubectl(&[
        "get",
        "service",
        &service,
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ])?
    .ok()?;
    ensure!(
        cluster_ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "Service {service} has no ClusterIP: {cluster_ip:?}"
    );
    eprintln!(
        "[e2e] s12: pool a routes tagger to {routes}; {service} is {cluster_ip}, pod b is {}",
        pod_ip(&pod_b)?
    );

    let r = post(
        &ingress_url(&pod_a, &format!("/hooks/{}/orders", ns.name))?,
        r#"{"order": 12}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let got = sink.wait_for(Some("/tagged"), 1, DELIVERY_TIMEOUT).await?;
    ensure!(
        got[0].json()? == serde_json::json!({"order": 12, "tagged": true, "tag": "dns"}),
        "tagged through the Service: {}",
        String::from_utf8_lossy(&got[0].body)
    );

    // CoreDNS answered pool a's pod for the Service's name.
    if let Some(run_dir) = stack.run_dir() {
        let name = format!("\"A IN {service}.{}.svc.cluster.local.", ns.name);
        let from = format!("{}:", pod_ip(&pod_a)?);
        let log = run_dir.join("logs").join("coredns.log");
        let text = std::fs::read_to_string(&log).with_context(|| format!("{}", log.display()))?;
        let hit = text
            .lines()
            .find(|l| l.contains(&name) && l.contains(&from) && l.contains("NOERROR"))
            .ok_or_else(|| {
                anyhow!(
                    "no NOERROR answer to {from} for {name} in {}",
                    log.display()
                )
            })?;
        eprintln!("[e2e] s12: coredns: {}", hit.trim());
    }
    ns.pass();
    Ok(())
}
