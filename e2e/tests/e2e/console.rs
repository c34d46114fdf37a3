//! Issue 16: `kubectl causeway` as a user with namespace-scoped RBAC only. In the
//! namespace the user may read, `events list` shows an event sent to a bridge and
//! `events replay` queues it again (through the API server's pod proxy, with the pool's
//! admin token from its Secret); in a namespace the user may not read, both are refused
//! by the API server and say so.
//!
//! And the operator's cluster console (the chart's `console.enabled`, on in
//! `e2e/values-local.yaml`): it lists the bridges of two pools, reached over the cluster
//! network with each pool's admin token, behind the console token from the chart's Secret.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use causeway_e2e::harness::http::{Sink, client, post};
use causeway_e2e::harness::{
    DELIVERY_TIMEOUT, READY_TIMEOUT, Stack, TestNs, Want, ingress_url, kubectl, ready_pool_pod,
    repo, wait_condition,
};

fn bridge(sink: &Sink) -> String {
    format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: orders}}\nspec:\n  destinations:\n  - name: out\n    url: {}\n",
        sink.url("/orders")
    )
}

/// What a namespace viewer of Causeway needs: find the workers, read the pool's admin
/// token, call the admin API through the pod proxy. Nothing cluster-wide.
fn viewer_rbac(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: viewer, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: causeway-viewer, namespace: {ns}}}
rules:
- {{apiGroups: [""], resources: [pods], verbs: [list, get]}}
- {{apiGroups: [""], resources: [pods/proxy], verbs: [get, create]}}
- {{apiGroups: [""], resources: [secrets], resourceNames: [causeway-default-admin], verbs: [get]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: causeway-viewer, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: causeway-viewer}}
subjects:
- {{kind: ServiceAccount, name: viewer, namespace: {ns}}}
"#
    )
}

/// A kubeconfig for the ServiceAccount `viewer` of `ns` (the admin kubeconfig's cluster,
/// a TokenRequest token), as `e2e/controlplane/sa-kubeconfig.sh` writes it.
fn viewer_kubeconfig(stack: &Stack, ns: &str, dir: &std::path::Path) -> Result<PathBuf> {
    let token = kubectl(&["-n", ns, "create", "token", "viewer", "--duration=1h"])?.ok()?;
    let admin = kube::config::Kubeconfig::read_from(&stack.kubeconfig)?;
    let current = admin
        .current_context
        .clone()
        .context("no current context")?;
    let ctx = admin
        .contexts
        .iter()
        .find(|c| c.name == current)
        .and_then(|c| c.context.clone())
        .context("no context")?;
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)
        .and_then(|c| c.cluster.clone())
        .context("no cluster")?;
    let server = cluster.server.context("no server")?;
    let ca = match (
        cluster.certificate_authority_data,
        cluster.certificate_authority,
    ) {
        (Some(data), _) => data,
        (None, Some(file)) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(file)?)
        }
        (None, None) => anyhow::bail!("the admin kubeconfig names no CA"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster: {{server: \"{server}\", certificate-authority-data: {ca}}}\nusers:\n- name: viewer\n  user: {{token: {}}}\ncontexts:\n- name: viewer\n  context: {{cluster: e2e, user: viewer, namespace: {ns}}}\ncurrent-context: viewer\n",
        token.trim()
    );
    let path = dir.join("viewer.kubeconfig");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The plugin binary, built when missing.
fn kubectl_causeway() -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("target"));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-q", "-p", "causeway", "--bin", "kubectl-causeway"])
        .current_dir(repo())
        .status()?;
    ensure!(
        status.success(),
        "cargo build --bin kubectl-causeway failed"
    );
    Ok(target.join("debug").join("kubectl-causeway"))
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(bin: &PathBuf, kubeconfig: &PathBuf, args: &[&str]) -> Result<Run> {
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()?;
    let r = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "[e2e] kubectl causeway {}: ok={} stdout={} stderr={}",
        args.join(" "),
        r.ok,
        r.stdout.trim(),
        r.stderr.trim()
    );
    Ok(r)
}

#[tokio::test]
async fn s16_kubectl_causeway_with_namespace_scoped_rbac() -> Result<()> {
    let stack = Stack::get()?;
    let mine = TestNs::new("console").await?;
    let other = TestNs::new("console-other").await?;
    let client = stack.client().await?;
    let sink = Sink::start()?;
    for ns in [&mine, &other] {
        ns.apply(&bridge(&sink))?;
        wait_condition(
            &client,
            &ns.name,
            "Bridge",
            "orders",
            Want::ready(),
            READY_TIMEOUT,
        )
        .await?;
    }
    mine.apply(&viewer_rbac(&mine.name))?;
    let pod = ready_pool_pod(&client, &mine.name, "default").await?;
    let hook = ingress_url(&pod, &format!("/hooks/{}/orders", mine.name))?;
    let r = post(
        &hook,
        r#"{"id": 1}"#,
        &[("content-type", "application/json")],
    )
    .await?;
    ensure!(r.status == 202, "{} {}", r.status, r.body);
    let id = serde_json::from_str::<serde_json::Value>(&r.body)?["id"]
        .as_str()
        .context("an event id")?
        .to_string();
    sink.wait_for(Some("/orders"), 1, DELIVERY_TIMEOUT).await?;

    let dir = tempfile::tempdir()?;
    let kc = viewer_kubeconfig(stack, &mine.name, dir.path())?;
    let bin = kubectl_causeway()?;

    // Its own namespace: list, show, replay.
    let list = run(
        &bin,
        &kc,
        &["events", "list", "-n", &mine.name, "-o", "json"],
    )?;
    ensure!(list.ok, "events list: {}", list.stderr);
    let events: serde_json::Value = serde_json::from_str(&list.stdout)?;
    ensure!(
        events
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["id"] == id.as_str())),
        "event {id} not listed: {}",
        list.stdout
    );
    let table = run(&bin, &kc, &["events", "list", "-n", &mine.name])?;
    ensure!(
        table.ok && table.stdout.starts_with("ID "),
        "{}",
        table.stdout
    );
    let replay = run(&bin, &kc, &["events", "replay", &id, "-n", &mine.name])?;
    ensure!(
        replay.ok && replay.stdout.contains("replayed: 1"),
        "replay: {} {}",
        replay.stdout,
        replay.stderr
    );
    sink.wait_for(Some("/orders"), 2, DELIVERY_TIMEOUT).await?;
    let show = run(
        &bin,
        &kc,
        &["events", "show", &id, "-n", &mine.name, "-o", "json"],
    )?;
    ensure!(show.ok, "show: {}", show.stderr);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout)?;
    ensure!(
        shown["actions"][0]["action"] == "replay" && shown["actions"][0]["via"] == "api",
        "the replay is in the action log: {}",
        show.stdout
    );

    // A namespace it cannot read: refused by the API server, and it says so.
    for args in [
        vec!["events", "list", "-n", &other.name],
        vec!["events", "replay", &id, "-n", &other.name],
    ] {
        let r = run(&bin, &kc, &args)?;
        ensure!(!r.ok, "{args:?} must be refused: {}", r.stdout);
        ensure!(
            r.stderr.contains("forbidden") && r.stderr.contains("your RBAC"),
            "{args:?}: {}",
            r.stderr
        );
    }
    mine.pass();
    other.pass();
    Ok(())
}

/// The operator's pod IP, the port and token of its cluster console (from the chart's
/// Service and Secret).
async fn cluster_console() -> Result<(String, String)> {
    let ns = std::env::var("E2E_RELEASE_NAMESPACE").unwrap_or_else(|_| "causeway-system".into());
    let svc = kubectl(&[
        "-n",
        &ns,
        "get",
        "svc",
        "-l",
        "causeway.dev/console=true",
        "-o",
        "json",
    ])?
    .ok()?;
    let svc: serde_json::Value = serde_json::from_str(&svc)?;
    let svc = svc["items"]
        .get(0)
        .context("no console Service: is console.enabled set?")?;
    let port = svc["spec"]["ports"][0]["port"]
        .as_i64()
        .context("the console port")?;
    let secret = svc["metadata"]["annotations"]["causeway.dev/console-token-secret"]
        .as_str()
        .context("the token Secret's name")?;
    let token = kubectl(&[
        "-n",
        &ns,
        "get",
        "secret",
        secret,
        "-o",
        "jsonpath={.data.token}",
    ])?
    .ok()?;
    use base64::Engine as _;
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token.trim())?)?;
    let pods = kubectl(&[
        "-n",
        &ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=operator",
        "--field-selector=status.phase=Running",
        "-o",
        "jsonpath={.items[0].status.podIP}",
    ])?
    .ok()?;
    let ip = pods.trim();
    ensure!(!ip.is_empty(), "no running operator pod");
    Ok((format!("http://{ip}:{port}"), token))
}

#[tokio::test]
async fn s16_the_cluster_console_lists_the_bridges_of_two_pools() -> Result<()> {
    let started = std::time::Instant::now();
    Stack::get()?;
    let ns = TestNs::new("cluster-console").await?;
    let client_k = Stack::get()?.client().await?;
    let sink = Sink::start()?;
    ns.apply(&format!("{}---\n{}", crate::pool("a"), crate::pool("b")))?;
    for (bridge, pool) in [("orders", "a"), ("invoices", "b")] {
        ns.apply(&format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {{name: {bridge}}}\nspec:\n  pool: {pool}\n  destinations:\n  - name: out\n    url: {}\n",
            sink.url(&format!("/{bridge}"))
        ))?;
        wait_condition(
            &client_k,
            &ns.name,
            "Bridge",
            bridge,
            Want::ready(),
            READY_TIMEOUT,
        )
        .await?;
    }
    let (base, token) = cluster_console().await?;
    let http = client()?;
    // Without the token: the sign-in page, and not the bridges.
    let anon = http.get(format!("{base}/")).send().await?;
    let anon_body = anon.text().await?;
    ensure!(
        anon_body.contains("Console token") && !anon_body.contains("orders"),
        "{anon_body}"
    );
    // With it: both pools and their bridges, as the workers report them. The operator
    // learns the pools' pods as it observes them, so give it a moment.
    let page = causeway_e2e::harness::eventually(
        "the cluster console lists both pools",
        READY_TIMEOUT,
        || {
            let http = http.clone();
            let (base, token, ns) = (base.clone(), token.clone(), ns.name.clone());
            async move {
                let r = http
                    .get(format!("{base}/"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                let status = r.status();
                let body = r.text().await?;
                let want = [
                    format!("Pool {ns}/a"),
                    format!("Pool {ns}/b"),
                    format!("{ns}/orders"),
                    format!("{ns}/invoices"),
                    format!("id=\"bridge-{ns}-a-orders\""),
                    format!("id=\"bridge-{ns}-b-invoices\""),
                ];
                if status.is_success() && want.iter().all(|w| body.contains(w.as_str())) {
                    Ok(Some(body))
                } else {
                    Ok(None)
                }
            }
        },
    )
    .await?;
    ensure!(!page.contains(&token), "the console token is on the page");
    let admin_a = kubectl(&[
        "-n",
        &ns.name,
        "get",
        "secret",
        "causeway-a-admin",
        "-o",
        "jsonpath={.data.token}",
    ])?
    .ok()?;
    use base64::Engine as _;
    let admin_a =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(admin_a.trim())?)?;
    ensure!(
        !page.contains(&admin_a),
        "a pool's admin token is on the page"
    );
    eprintln!("[e2e] s16 cluster console: {:.1?}", started.elapsed());
    ns.pass();
    Ok(())
}
