//! Scenario tests of the reconcilers against a mocked API server (tower-test), in the
//! style of kube-rs controller-rs `fixtures.rs`: the fake records every request and answers
//! like an API server would (404 for missing Secrets, echo for applies).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use causeway_crds::{Bridge, Plugin, WorkerConfig, WorkerPool};
use futures::channel::mpsc::{UnboundedReceiver, unbounded};
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};

use super::*;
use crate::admin::AdminApi;
use crate::builders::BuildSettings;
use crate::metrics::Metrics;
use crate::status::{BridgeReport, WorkerReport};

/// One request the operator made.
#[derive(Clone, Debug)]
struct Call {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// How the fake API server answers.
#[derive(Default)]
struct FakeApi {
    /// Objects that exist: path → object (applies add to it).
    objects: BTreeMap<String, Value>,
    /// Paths whose PATCH fails with this code.
    fail_patch: BTreeMap<String, u16>,
    /// Paths whose POST answers 409.
    exists: Vec<String>,
}

fn status_body(code: u16, reason: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": reason, "reason": reason, "code": code}))
        .unwrap()
}

fn stub_spec(path: &str) -> Value {
    if path.contains("/plugins/") {
        json!({"source": {}})
    } else {
        json!({})
    }
}

impl FakeApi {
    fn answer(&mut self, method: &str, path: &str, body: &Value) -> (u16, Vec<u8>) {
        match method {
            "GET" => match self.objects.get(path) {
                Some(o) => (200, serde_json::to_vec(o).unwrap()),
                None => (404, status_body(404, "NotFound")),
            },
            "PATCH" => {
                if let Some(code) = self.fail_patch.get(path) {
                    return (*code, status_body(*code, "Forbidden"));
                }
                let mut echo = body.clone();
                if !path.ends_with("/status") {
                    // Applied objects persist, as on a real API server.
                    self.objects.insert(path.to_string(), body.clone());
                }
                if path.ends_with("/status") {
                    let parts: Vec<&str> = path.split('/').collect();
                    let name = parts[parts.len() - 2];
                    let ns = parts[parts.iter().position(|p| *p == "namespaces").unwrap() + 1];
                    echo["metadata"] = json!({"name": name, "namespace": ns});
                    echo["spec"] = stub_spec(path);
                }
                (200, serde_json::to_vec(&echo).unwrap())
            }
            "POST" => {
                if self.exists.iter().any(|p| p == path) {
                    return (409, status_body(409, "AlreadyExists"));
                }
                (201, serde_json::to_vec(body).unwrap())
            }
            "DELETE" => (200, serde_json::to_vec(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})).unwrap()),
            _ => (405, status_body(405, "MethodNotAllowed")),
        }
    }
}

/// Spawn the fake server; returns the client and the recorded calls.
fn mock_client(mut api: FakeApi) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let (code, resp) = api.answer(&method, &path, &body);
            recorded.lock().unwrap().push(Call {
                method,
                path,
                query,
                body,
            });
            let mut r = Response::new(Body::from(resp));
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            send.send_response(r);
        }
    });
    (Client::new(service, "default"), calls)
}

/// Workers that answer with whatever the test sets.
#[derive(Default)]
struct FakeAdmin {
    reports: Mutex<BTreeMap<String, Result<WorkerReport, String>>>,
    asked: Mutex<Vec<(String, String)>>,
}

impl AdminApi for FakeAdmin {
    fn config(
        &self,
        pod_ip: &str,
        token: &str,
    ) -> BoxFuture<'static, Result<WorkerReport, String>> {
        self.asked
            .lock()
            .unwrap()
            .push((pod_ip.to_string(), token.to_string()));
        let r = self
            .reports
            .lock()
            .unwrap()
            .get(pod_ip)
            .cloned()
            .unwrap_or_else(|| Err("connection refused".into()));
        Box::pin(async move { r })
    }
}

struct Fixture {
    ctx: Arc<Context>,
    calls: Arc<Mutex<Vec<Call>>>,
    admin: Arc<FakeAdmin>,
    _woken_bridges: UnboundedReceiver<ObjectRef<Bridge>>,
    _woken_plugins: UnboundedReceiver<ObjectRef<Plugin>>,
}

impl Fixture {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
    fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method != "GET")
            .collect()
    }
}

fn store_of<K>(objs: Vec<K>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    for o in objs {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    // The writer may go: the store keeps its contents.
    store
}

#[derive(Default)]
struct World {
    pools: Vec<WorkerPool>,
    bridges: Vec<Bridge>,
    plugins: Vec<Plugin>,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
    replica_sets: Vec<PartialObjectMeta<ReplicaSet>>,
    deployments: Vec<PartialObjectMeta<Deployment>>,
    network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
    api: FakeApi,
}

impl World {
    /// A ready worker pod of `pool` with its real owner chain: ReplicaSet → Deployment →
    /// WorkerPool (uid `uid-<pool>`), as the Deployment controller makes it.
    fn with_worker(mut self, name: &str, pool: &str, ip: &str) -> Self {
        let deploy_uid = format!("uid-deploy-{pool}");
        let rs_uid = format!("uid-rs-{pool}");
        if !self
            .deployments
            .iter()
            .any(|d| d.metadata.uid.as_deref() == Some(deploy_uid.as_str()))
        {
            self.deployments.push(meta_of(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("causeway-{pool}"), "namespace": "shop", "uid": deploy_uid,
                    "ownerReferences": [{"apiVersion": "causeway.dev/v1alpha1", "kind": "WorkerPool", "name": pool, "uid": format!("uid-{pool}"), "controller": true}]},
            })));
            self.replica_sets.push(meta_of(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("causeway-{pool}-5d8f"), "namespace": "shop", "uid": rs_uid,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("causeway-{pool}"), "uid": deploy_uid, "controller": true}]},
            })));
        }
        let mut pod = ready_pod(name, pool, ip);
        pod.metadata.owner_references = Some(vec![serde_json::from_value(json!(
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("causeway-{pool}-5d8f"), "uid": rs_uid, "controller": true}
        )).unwrap()]);
        self.pods.push(pod);
        self
    }
}

fn meta_of<K: Resource<DynamicType = ()>>(v: Value) -> PartialObjectMeta<K> {
    let meta: kube::core::ObjectMeta = serde_json::from_value(v["metadata"].clone()).unwrap();
    PartialObjectMeta {
        types: None,
        metadata: meta,
        _phantom: Default::default(),
    }
}

fn fixture(world: World) -> Fixture {
    fixture_with(world, None)
}

fn fixture_with(
    world: World,
    network_policy: Option<crate::builders::NetworkPolicySettings>,
) -> Fixture {
    let (client, calls) = mock_client(world.api);
    let (bt, br) = unbounded();
    let (pt, pr) = unbounded();
    let admin = Arc::new(FakeAdmin::default());
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "causeway-operator".into()),
        client,
        settings: Settings {
            build: BuildSettings {
                worker_image: "causeway:test".into(),
                image_pull_policy: None,
                image_pull_secrets: vec![],
                network_policy,
                deny_destination_cidrs: vec![],
                otel_env: vec![],
            },
            default_pool: PoolDefaults {
                replicas: 1,
                storage_size: "2Gi".into(),
                storage_class: None,
                postgres_url: None,
            },
            requeue_pending: Duration::from_secs(5),
            requeue_converged: Duration::from_secs(60),
            render_batch: Duration::from_secs(1),
            reconcile_concurrency: 16,
            pool_routing: crate::cli::PoolRouting::PodIps,
        },
        stores: Stores {
            pools: store_of(world.pools),
            bridges: store_of(world.bridges),
            plugins: store_of(world.plugins),
            pods: store_of(world.pods),
            claims: store_of(world.claims),
            budgets: store_of(vec![]),
            autoscalers: store_of(vec![]),
            service_accounts: store_of(vec![]),
            network_policies: store_of(world.network_policies),
            replica_sets: store_of(world.replica_sets),
            deployments: store_of(world.deployments),
        },
        admin: admin.clone(),
        metrics: Metrics::new().unwrap(),
        observations: Arc::new(RwLock::new(BTreeMap::new())),
        wake_bridges: bt,
        wake_plugins: pt,
        synced: AtomicBool::new(true),
    });
    Fixture {
        ctx,
        calls,
        admin,
        _woken_bridges: br,
        _woken_plugins: pr,
    }
}

fn pool(name: &str, spec: Value) -> WorkerPool {
    serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn bridge(name: &str, spec: Value) -> Bridge {
    serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "Bridge",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-b-{name}"), "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }))
    .unwrap()
}

fn ready_pod(name: &str, pool: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"causeway.dev/pool": pool, "app.kubernetes.io/managed-by": "causeway-operator"}},
        "spec": {"containers": []},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

const NS: &str = "/api/v1/namespaces/shop";

fn status_of(calls: &[Call], path: &str) -> Value {
    calls
        .iter()
        .rev()
        .find(|c| c.is("PATCH", path))
        .map(|c| c.body["status"].clone())
        .unwrap_or(Value::Null)
}

fn ready_condition(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn new_pool_applies_every_child_with_ssa_then_writes_status() {
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    let action = reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "not converged yet: poll"
    );

    let calls = f.calls();
    let patched: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        patched,
        vec![
            "/api/v1/namespaces/shop/secrets/causeway-internal-token",
            "/api/v1/namespaces/shop/secrets/causeway-orders-admin",
            "/api/v1/namespaces/shop/serviceaccounts/causeway-orders",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles/causeway-orders",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/causeway-orders",
            "/api/v1/namespaces/shop/secrets/causeway-orders-config",
            "/api/v1/namespaces/shop/persistentvolumeclaims/causeway-orders-data",
            "/apis/apps/v1/namespaces/shop/deployments/causeway-orders",
            "/api/v1/namespaces/shop/services/causeway-orders",
            "/api/v1/namespaces/shop/services/causeway-orders-internal",
            "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
        ]
    );
    for c in calls.iter().filter(|c| c.method == "PATCH") {
        assert!(
            c.query.contains("fieldManager=causeway-operator") && c.query.contains("force=true"),
            "{} {}",
            c.path,
            c.query
        );
    }
    // The config Secret holds the rendered config and its version.
    let cfg_call = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-orders-config")))
        .unwrap();
    let data = cfg_call.body["data"]["config.json"].as_str().unwrap();
    let cfg: WorkerConfig = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (cfg.pool.as_str(), cfg.namespace.as_str()),
        ("orders", "shop")
    );
    assert!(cfg.admin_token.is_some());
    assert_eq!(cfg.internal_tokens.len(), 1);
    assert_eq!(
        cfg_call.body["metadata"]["annotations"]["causeway.dev/config-version"],
        json!(cfg.version)
    );

    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(status["configVersion"], json!(cfg.version));
    assert_eq!(status["observedGeneration"], json!(1));
    assert_eq!(
        status["selector"],
        json!("app.kubernetes.io/name=causeway-worker,causeway.dev/pool=orders")
    );
    assert_eq!(ready_condition(&status), ("False".into(), "Pending".into()));
    // A Normal event announced the render.
    assert!(calls.iter().any(|c| c.method == "POST"
        && c.path.ends_with("/events")
        && c.body["reason"] == "ConfigRendered"));
}

#[tokio::test]
async fn status_is_not_rewritten_when_nothing_changed() {
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    let written = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );

    // The API now holds what we wrote.
    let mut again = p.as_ref().clone();
    again.status = Some(serde_json::from_value(written).unwrap());
    f.clear();
    reconcile_pool(Arc::new(again), f.ctx.clone())
        .await
        .unwrap();
    let calls = f.calls();
    assert!(
        !calls.iter().any(|c| c.path.ends_with("/status")),
        "status written again: {calls:#?}"
    );
    assert!(
        !calls.iter().any(|c| c.path.ends_with("/events")),
        "no event without a change"
    );
}

#[tokio::test]
async fn a_bridge_with_a_missing_secret_is_secret_not_found_not_an_error() {
    let b = bridge(
        "orders",
        json!({
            "ingress": {"auth": {"hmac": {"preset": "github", "secretRef": {"name": "gh-secret", "key": "token"}}}},
            "destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]
        }),
    );
    let f = fixture(World {
        pools: vec![pool("default", json!({}))],
        bridges: vec![b],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert!(
        f.calls()
            .iter()
            .any(|c| c.is("GET", &format!("{NS}/secrets/gh-secret")))
    );
    let obs = f.ctx.observation("shop", "default").unwrap();
    assert_eq!(obs.problems[0].reason, "SecretNotFound");

    let b = f.ctx.stores.bridges.state()[0].clone();
    f.clear();
    let action = reconcile_bridge(b.clone(), f.ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(60)),
        "a bad reference waits for a change, no retry storm"
    );
    let calls = f.calls();
    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "SecretNotFound".into())
    );
    assert_eq!(
        status["url"],
        json!("http://causeway-default.shop.svc:8080/hooks/shop/orders")
    );
    let ev = calls.iter().find(|c| c.path.ends_with("/events")).unwrap();
    assert_eq!(
        (ev.body["type"].as_str(), ev.body["reason"].as_str()),
        (Some("Warning"), Some("SecretNotFound"))
    );
    assert!(
        !ev.body.to_string().contains("token\":\""),
        "no secret values in events"
    );

    // Same state again: nothing written.
    let mut again = b.as_ref().clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    again.metadata.finalizers = Some(vec!["causeway.dev/drain".into()]);
    f.clear();
    reconcile_bridge(Arc::new(again), f.ctx.clone())
        .await
        .unwrap();
    assert!(f.writes().is_empty(), "{:#?}", f.calls());
}

#[tokio::test]
async fn a_bridge_naming_no_pool_creates_the_default_pool() {
    let b = bridge(
        "orders",
        json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]}),
    );
    let f = fixture(World {
        bridges: vec![b],
        ..World::default()
    });
    let b = f.ctx.stores.bridges.state()[0].clone();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let create = calls
        .iter()
        .find(|c| {
            c.is(
                "POST",
                "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools",
            )
        })
        .unwrap();
    assert_eq!(create.body["metadata"]["name"], json!("default"));
    assert_eq!(create.body["spec"]["storage"]["size"], json!("2Gi"));
    assert!(create.query.contains("fieldManager=causeway-operator"));
    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status",
    );
    assert_eq!(ready_condition(&status), ("False".into(), "Pending".into()));
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/events") && c.body["reason"] == "DefaultPoolCreated")
    );
}

#[tokio::test]
async fn an_existing_default_pool_is_never_overwritten() {
    let b = bridge(
        "orders",
        json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]}),
    );
    let api = FakeApi {
        exists: vec!["/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools".into()],
        ..FakeApi::default()
    };
    let f = fixture(World {
        bridges: vec![b],
        api,
        ..World::default()
    });
    let b = f.ctx.stores.bridges.state()[0].clone();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    assert!(!calls.iter().any(|c| c.method == "PATCH"
        && c.path.contains("/workerpools/default")
        && !c.path.ends_with("/status")));
    assert!(
        !calls
            .iter()
            .any(|c| c.body["reason"] == "DefaultPoolCreated")
    );
}

#[tokio::test]
async fn bridge_becomes_ready_when_the_worker_runs_its_generation() {
    let b = bridge(
        "orders",
        json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]}),
    );
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            bridges: vec![b],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    let (ip, token) = f.admin.asked.lock().unwrap()[0].clone();
    assert_eq!(ip, "127.0.0.7");
    assert_eq!(token.len(), 64, "the pool's admin token");
    let desired = f
        .ctx
        .observation("shop", "default")
        .unwrap()
        .desired_version
        .clone();

    f.admin.reports.lock().unwrap().insert(
        "127.0.0.7".into(),
        Ok(WorkerReport {
            version: desired.clone(),
            bridges: vec![BridgeReport {
                namespace: "shop".into(),
                name: "orders".into(),
                generation: Some(1),
                error: None,
                ..BridgeReport::default()
            }],
            ..WorkerReport::default()
        }),
    );
    f.clear();
    let action = reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(60)),
        "converged"
    );
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/default/status",
    );
    assert_eq!(ready_condition(&status), ("True".into(), "Ready".into()));
    assert_eq!(
        (
            status["replicas"].as_i64(),
            status["readyReplicas"].as_i64()
        ),
        (Some(1), Some(1))
    );

    let b = f.ctx.stores.bridges.state()[0].clone();
    f.clear();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status",
    );
    assert_eq!(ready_condition(&status), ("True".into(), "Ready".into()));
    assert_eq!(status["configVersion"], json!(desired));
}

#[tokio::test]
async fn switching_to_postgres_deletes_the_volume_claim_only_when_asked() {
    // The default (Retain) keeps the claim and its data.
    let retained = switch_to_postgres(json!({})).await;
    assert!(
        !retained
            .iter()
            .any(|c| c.method == "DELETE" && c.path.contains("persistentvolumeclaims")),
        "Retain deleted a claim"
    );
    let calls = switch_to_postgres(json!({"whenDeleted": "Delete"})).await;
    assert!(calls.iter().any(|c| c.is(
        "DELETE",
        &format!("{NS}/persistentvolumeclaims/causeway-orders-data")
    )));
    assert!(!calls.iter().any(|c| c.path.contains("someone-elses")));
}

async fn switch_to_postgres(retention: serde_json::Value) -> Vec<Call> {
    let p = pool(
        "orders",
        json!({"storage": {"type": "postgres", "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}}},
               "persistentVolumeClaimRetentionPolicy": retention}),
    );
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "causeway-orders-data", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "causeway.dev/v1alpha1", "kind": "WorkerPool", "name": "orders", "uid": "uid-orders", "controller": true}]},
    }))
    .unwrap();
    let foreign: PersistentVolumeClaim = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "someone-elses", "namespace": "shop"},
    }))
    .unwrap();
    let mut api = FakeApi::default();
    api.objects.insert(
        format!("{NS}/secrets/pg"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg", "namespace": "shop", "labels": {"causeway.dev/use": "true"}}}),
    );
    let f = fixture(World {
        pools: vec![p],
        claims: vec![claim, foreign],
        api,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    assert!(!calls.iter().any(|c| c.is(
        "PATCH",
        &format!("{NS}/persistentvolumeclaims/causeway-orders-data")
    )));
    let deploy = calls
        .iter()
        .find(|c| c.path.ends_with("/deployments/causeway-orders"))
        .unwrap();
    assert_eq!(
        deploy.body["spec"]["strategy"]["type"],
        json!("RollingUpdate")
    );
    calls
}

#[tokio::test]
async fn a_failed_apply_is_a_condition_and_an_error_with_a_bounded_label() {
    let mut api = FakeApi::default();
    api.fail_patch.insert(
        "/apis/apps/v1/namespaces/shop/deployments/causeway-orders".into(),
        403,
    );
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        api,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    let err = reconcile_pool(p, f.ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "forbidden");
    assert!(
        err.to_string().contains("Deployment shop/causeway-orders"),
        "{err}"
    );
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "ApplyFailed".into())
    );
}

// Issue 15: a pool whose rendered config does not fit in its Secret even compressed says
// so in its Ready condition (`ConfigTooLarge`, with the sizes), writes no config Secret (the
// workers keep the one they run) and no Deployment, and counts a bounded error label.
#[tokio::test]
async fn a_config_too_large_for_its_secret_is_a_condition_and_nothing_is_written() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let bridges = (0..400)
        .map(|i| {
            let noise: String = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[(x % 62) as usize])
                })
                .collect();
            bridge(
                &format!("b{i:03}"),
                json!({"pool": "orders", "destinations": [{"name": "out", "url": "http://127.0.0.1:9/",
                    "body": format!("{{\"n\": \"{noise}\"}}")}]}),
            )
        })
        .collect();
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        bridges,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    let err = reconcile_pool(p, f.ctx.clone()).await.unwrap_err();
    assert_eq!(err.metric_label(), "config_too_large");
    let calls = f.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "PATCH" && c.path.ends_with("/secrets/causeway-orders-config")),
        "no config Secret written"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.path.ends_with("/deployments/causeway-orders")),
        "nothing after the config is applied"
    );
    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "ConfigTooLarge".into())
    );
    let message = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("does not fit in a Secret"), "{message}");
    assert!(message.contains("1048576"), "{message}");
}

#[tokio::test]
async fn existing_tokens_are_kept() {
    let mut api = FakeApi::default();
    api.objects.insert(
        format!("{NS}/secrets/causeway-orders-admin"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "causeway-orders-admin", "namespace": "shop"},
               "data": {"token": base64::engine::general_purpose::STANDARD.encode("keep-me")}}),
    );
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        api,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let admin = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-orders-admin")))
        .unwrap();
    assert_eq!(
        admin.body["data"]["token"],
        json!(base64::engine::general_purpose::STANDARD.encode("keep-me"))
    );
}

#[tokio::test]
async fn a_plugin_placed_in_a_missing_pool_is_pool_not_found() {
    let pl: Plugin = serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "enrich", "namespace": "shop", "uid": "uid-p", "generation": 2},
        "spec": {"source": {"http": {"url": "http://127.0.0.1:9/p.wasm", "sha256": "a".repeat(64)}}, "pool": "fast"},
    }))
    .unwrap();
    let f = fixture(World {
        pools: vec![pool("default", json!({}))],
        plugins: vec![pl],
        ..World::default()
    });
    let pl = f.ctx.stores.plugins.state()[0].clone();
    reconcile_plugin(pl, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/plugins/enrich/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "PoolNotFound".into())
    );
    assert_eq!(status["observedGeneration"], json!(2));
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "POST" && c.path.ends_with("/workerpools")),
        "a named pool is never created"
    );
}

#[tokio::test]
async fn routes_to_other_pools_use_ready_pod_ips() {
    let pl: Plugin = serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "enrich", "namespace": "shop", "uid": "uid-p", "generation": 1},
        "spec": {"source": {"http": {"url": "http://127.0.0.1:9/p.wasm", "sha256": "a".repeat(64)}}, "pool": "b"},
    }))
    .unwrap();
    let f = fixture(
        World {
            pools: vec![pool("a", json!({})), pool("b", json!({}))],
            plugins: vec![pl],
            ..World::default()
        }
        .with_worker("causeway-b-1", "b", "127.0.0.12"),
    );
    let a = f
        .ctx
        .stores
        .pools
        .find(|p| p.metadata.name.as_deref() == Some("a"))
        .unwrap();
    reconcile_pool(a, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let cfg_call = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-a-config")))
        .unwrap();
    let data = cfg_call.body["data"]["config.json"].as_str().unwrap();
    let cfg: WorkerConfig = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg.routes.len(), 1);
    assert_eq!(cfg.routes[0].urls, vec!["http://127.0.0.12:8081"]);
    // Both pools own the shared internal token.
    let tok = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-internal-token")))
        .unwrap();
    assert_eq!(
        tok.body["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn nothing_is_rendered_before_the_stores_have_listed() {
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        ..World::default()
    });
    f.ctx
        .synced
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let p = f.ctx.stores.pools.state()[0].clone();
    let action = reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert!(
        f.calls().is_empty(),
        "a half-filled store must never produce a config"
    );
}

#[tokio::test]
async fn an_invalid_pool_is_a_condition_and_nothing_is_applied() {
    let f = fixture(World {
        pools: vec![pool("orders", json!({"replicas": 3}))],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    let action = reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    let calls = f.calls();
    let writes: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| c.path.as_str())
        .collect();
    assert_eq!(
        writes,
        vec!["/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status"]
    );
    let status = status_of(&calls, writes[0]);
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "InvalidSpec".into())
    );
}

// Issue 12 item 17: a pod that only carries a pool's labels (anyone who may create a pod
// can copy them) is neither asked with the admin token nor routed to with the internal
// token; the pool's real worker is.
#[tokio::test]
async fn item17_workers_are_chosen_by_owner_not_by_label() {
    let pl: Plugin = serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "enrich", "namespace": "shop", "uid": "uid-p", "generation": 1},
        "spec": {"source": {"http": {"url": "http://127.0.0.1:9/p.wasm", "sha256": "a".repeat(64)}}, "pool": "b"},
    }))
    .unwrap();
    let mut world = World {
        pools: vec![pool("a", json!({})), pool("b", json!({}))],
        plugins: vec![pl],
        ..World::default()
    }
    .with_worker("causeway-a-0", "a", "127.0.0.20")
    .with_worker("causeway-b-0", "b", "127.0.0.21");
    // Impostors: the labels of pools a and b, no owner; and one owned by a ReplicaSet the
    // operator never saw.
    world.pods.push(ready_pod("evil-a", "a", "127.0.0.66"));
    world.pods.push(ready_pod("evil-b", "b", "127.0.0.67"));
    let mut forged = ready_pod("forged-b", "b", "127.0.0.68");
    forged.metadata.owner_references = Some(vec![serde_json::from_value(json!(
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "causeway-b-5d8f", "uid": "uid-made-up", "controller": true}
    )).unwrap()]);
    world.pods.push(forged);
    let f = fixture(world);
    let a = f
        .ctx
        .stores
        .pools
        .find(|p| p.metadata.name.as_deref() == Some("a"))
        .unwrap();
    reconcile_pool(a, f.ctx.clone()).await.unwrap();
    let asked: Vec<String> = f
        .admin
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|(ip, _)| ip.clone())
        .collect();
    assert_eq!(
        asked,
        vec!["127.0.0.20"],
        "only pool a's own worker gets the admin token"
    );
    let obs = f.ctx.observation("shop", "a").unwrap();
    assert_eq!(
        obs.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        vec!["causeway-a-0"]
    );
    let calls = f.calls();
    let cfg_call = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-a-config")))
        .unwrap();
    let data = cfg_call.body["data"]["config.json"].as_str().unwrap();
    let cfg: WorkerConfig = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        cfg.routes[0].urls,
        vec!["http://127.0.0.21:8081"],
        "routes only to pool b's real worker"
    );
}

// Issue 12 item 18: a pool naming a ServiceAccount that did not opt in gets a condition,
// and nothing is bound to that account.
#[tokio::test]
async fn item18_a_service_account_without_the_pool_label_is_not_bound() {
    let f = fixture(World {
        pools: vec![pool("orders", json!({"serviceAccountName": "team-sa"}))],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    assert!(
        !calls.iter().any(|c| c.path.contains("rolebindings")),
        "{calls:#?}"
    );
    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "ServiceAccountNotOptedIn".into())
    );

    let mut api = FakeApi::default();
    api.objects.insert(
        format!("{NS}/serviceaccounts/team-sa"),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "team-sa", "namespace": "shop", "labels": {"causeway.dev/pool": "orders"}}}),
    );
    let f = fixture(World {
        pools: vec![pool("orders", json!({"serviceAccountName": "team-sa"}))],
        api,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let rb = calls
        .iter()
        .find(|c| {
            c.is(
                "PATCH",
                "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/causeway-orders",
            )
        })
        .unwrap();
    assert_eq!(rb.body["subjects"][0]["name"], json!("team-sa"));
}

// Issue 12 item 10 (operator side): a Secret without the opt-in label is known to exist,
// but its data never enters the inventory; the Bridge gets SecretNotOptedIn.
#[tokio::test]
async fn item10_an_unlabelled_secret_is_not_read_into_the_config() {
    let b = bridge(
        "orders",
        json!({
            "destinations": [{"name": "crm", "url": "http://127.0.0.1:9/$env.T"}],
            "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
        }),
    );
    let mut api = FakeApi::default();
    api.objects.insert(
        format!("{NS}/secrets/db"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
               "data": {"password": base64::engine::general_purpose::STANDARD.encode("hunter2-value")}}),
    );
    let f = fixture(World {
        pools: vec![pool("default", json!({}))],
        bridges: vec![b],
        api,
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let obs = f.ctx.observation("shop", "default").unwrap();
    assert_eq!(obs.problems.len(), 1);
    assert_eq!(obs.problems[0].reason, "SecretNotOptedIn");
    assert!(
        obs.problems[0].message.contains("causeway.dev/use"),
        "{}",
        obs.problems[0].message
    );
    let calls = f.calls();
    let cfg_call = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-default-config")))
        .unwrap();
    let data = cfg_call.body["data"]["config.json"].as_str().unwrap();
    let json = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap();
    assert!(!json.contains("hunter2-value"));
    assert!(
        !format!("{calls:?}").contains("hunter2-value\""),
        "no write carries the value"
    );

    let b = f.ctx.stores.bridges.state()[0].clone();
    f.clear();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status",
    );
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "SecretNotOptedIn".into())
    );
    assert!(!status.to_string().contains("hunter2"));
}

// Issue 12 item 13 (operator side): an empty or blank stored token is replaced by a new one.
#[tokio::test]
async fn item13_an_empty_or_blank_admin_token_is_regenerated() {
    for stored in ["", "   ", "\n"] {
        let mut api = FakeApi::default();
        api.objects.insert(
            format!("{NS}/secrets/causeway-orders-admin"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "causeway-orders-admin", "namespace": "shop"},
                   "data": {"token": base64::engine::general_purpose::STANDARD.encode(stored)}}),
        );
        let f = fixture(World {
            pools: vec![pool("orders", json!({}))],
            api,
            ..World::default()
        });
        let p = f.ctx.stores.pools.state()[0].clone();
        reconcile_pool(p, f.ctx.clone()).await.unwrap();
        let calls = f.calls();
        let admin = calls
            .iter()
            .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-orders-admin")))
            .unwrap();
        let token = base64::engine::general_purpose::STANDARD
            .decode(admin.body["data"]["token"].as_str().unwrap())
            .unwrap();
        assert_eq!(token.len(), 64, "{stored:?} replaced by a generated token");
        let cfg_call = calls
            .iter()
            .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-orders-config")))
            .unwrap();
        let data = cfg_call.body["data"]["config.json"].as_str().unwrap();
        let cfg: WorkerConfig = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(cfg.admin_token.unwrap().expose().as_bytes(), &token[..]);
    }
}

// Issue 12 item 8: with the flag, each pool gets its NetworkPolicy by server-side apply;
// without it, one the pool controls is deleted.
#[tokio::test]
async fn item8_the_pool_network_policy_is_applied_and_removed_when_turned_off() {
    let settings = crate::builders::NetworkPolicySettings {
        operator: crate::builders::Peer {
            namespace_labels: [(
                "kubernetes.io/metadata.name".to_string(),
                "causeway-system".to_string(),
            )]
            .into(),
            pod_labels: [("app.kubernetes.io/name".to_string(), "causeway".to_string())].into(),
        },
        prometheus: None,
    };
    let f = fixture_with(
        World {
            pools: vec![pool("orders", json!({}))],
            ..World::default()
        },
        Some(settings),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let np = calls
        .iter()
        .find(|c| {
            c.is(
                "PATCH",
                "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/causeway-orders",
            )
        })
        .expect("the policy is applied");
    assert!(np.query.contains("fieldManager=causeway-operator") && np.query.contains("force=true"));
    assert_eq!(
        np.body["metadata"]["ownerReferences"][0]["uid"],
        json!("uid-orders")
    );

    let owned: k8s_openapi::api::networking::v1::NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "causeway-orders", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "causeway.dev/v1alpha1", "kind": "WorkerPool", "name": "orders", "uid": "uid-orders", "controller": true}]},
    }))
    .unwrap();
    let f = fixture(World {
        pools: vec![pool("orders", json!({}))],
        network_policies: vec![owned],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    assert!(calls.iter().any(|c| c.is(
        "DELETE",
        "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/causeway-orders"
    )));
}

// Issue 12 item 10 (the pool's own Secret): the postgres URL Secret reaches the worker
// through its pod spec, so it needs the same opt-in; without it nothing is applied.
#[tokio::test]
async fn item10_a_postgres_url_secret_must_be_opted_in() {
    let spec = json!({"storage": {"type": "postgres", "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}}}});
    for (labels, want) in [
        (json!(null), "SecretNotOptedIn"),
        (json!({"causeway.dev/use": "false"}), "SecretNotOptedIn"),
    ] {
        let mut api = FakeApi::default();
        api.objects.insert(
            format!("{NS}/secrets/pg"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg", "namespace": "shop", "labels": labels}}),
        );
        let f = fixture(World {
            pools: vec![pool("orders", spec.clone())],
            api,
            ..World::default()
        });
        let p = f.ctx.stores.pools.state()[0].clone();
        reconcile_pool(p, f.ctx.clone()).await.unwrap();
        let calls = f.calls();
        assert!(
            !calls.iter().any(|c| c.path.contains("/deployments/")),
            "nothing applied: {calls:#?}"
        );
        let status = status_of(
            &calls,
            "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
        );
        assert_eq!(ready_condition(&status).1, want);
    }
    let f = fixture(World {
        pools: vec![pool("orders", spec)],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(ready_condition(&status).1, "SecretNotFound");
}

// Issue 14: a postgres pool runs its replicas on the shared store (no claim, the URL from
// the pool's Secret), its status names the store, and while the workers cannot reach the
// database, Ready says why. Pods that are not ready are asked for their report too.
#[tokio::test]
async fn a_postgres_pool_says_which_store_and_why_it_is_not_ready() {
    let spec = json!({"replicas": 2, "storage": {"type": "postgres", "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}}}});
    let mut api = FakeApi::default();
    api.objects.insert(
        format!("{NS}/secrets/pg"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pg", "namespace": "shop", "labels": {"causeway.dev/use": "true"}}}),
    );
    let mut world = World {
        pools: vec![pool("orders", spec)],
        api,
        ..World::default()
    }
    .with_worker("causeway-orders-a", "orders", "127.0.0.7")
    .with_worker("causeway-orders-b", "orders", "127.0.0.8");
    for p in &mut world.pods {
        p.status.as_mut().unwrap().conditions = Some(vec![
            serde_json::from_value(json!({"type": "Ready", "status": "False"})).unwrap(),
        ]);
    }
    let f = fixture(world);
    let down = |healthy: bool| {
        Ok(WorkerReport {
            store: Some(crate::status::StoreReport::new(
                "postgres",
                "db.shop.svc:5432/causeway",
                healthy,
            )),
            ..WorkerReport::default()
        })
    };
    for ip in ["127.0.0.7", "127.0.0.8"] {
        f.admin
            .reports
            .lock()
            .unwrap()
            .insert(ip.into(), down(false));
    }
    let p = f.ctx.stores.pools.state()[0].clone();
    let action = reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "pending");
    let calls = f.calls();

    let mut asked: Vec<String> = f
        .admin
        .asked
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.0.clone())
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        ["127.0.0.7", "127.0.0.8"],
        "not-ready pods are asked"
    );

    assert!(
        !calls
            .iter()
            .any(|c| c.path.contains("/persistentvolumeclaims/") && c.method == "PATCH"),
        "no volume claim for a postgres pool"
    );
    let deployment = calls
        .iter()
        .find(|c| {
            c.is(
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/causeway-orders",
            )
        })
        .expect("the Deployment is applied");
    let pod = &deployment.body["spec"]["template"]["spec"];
    assert_eq!(deployment.body["spec"]["replicas"], 2);
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.get("persistentVolumeClaim").is_none()),
        "{pod}"
    );
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let url = env
        .iter()
        .find(|e| e["name"] == "CAUSEWAY_POSTGRES_URL")
        .unwrap();
    assert_eq!(
        url["valueFrom"]["secretKeyRef"],
        json!({"name": "pg", "key": "url"})
    );

    let status = status_of(
        &calls,
        "/apis/causeway.dev/v1alpha1/namespaces/shop/workerpools/orders/status",
    );
    assert_eq!(status["store"], "postgres");
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "StoreUnavailable".into())
    );
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("db.shop.svc:5432"), "{message}");
    let warned = calls.iter().any(|c| {
        c.method == "POST" && c.path.ends_with("/events") && c.body["reason"] == "StoreUnavailable"
    });
    assert!(warned, "a Warning Event says so: {calls:#?}");
}

// Issue 14 (chart): `defaultPool.postgresUrlSecret` puts a `default` pool on the shared
// store, with any number of replicas.
#[test]
fn the_default_pool_can_run_on_postgres() {
    let defaults = PoolDefaults {
        replicas: 3,
        storage_size: "1Gi".into(),
        storage_class: None,
        postgres_url: Some(causeway_crds::common::SecretKeyRef {
            name: "causeway-postgres".into(),
            key: "url".into(),
        }),
    };
    let spec = serde_json::to_value(defaults.spec()).unwrap();
    assert_eq!(spec["replicas"], 3);
    assert_eq!(
        spec["storage"]["postgres"],
        json!({"urlSecretRef": {"name": "causeway-postgres", "key": "url"}})
    );
    assert_eq!(spec["storage"]["type"], "postgres");
    assert!(causeway_crds::validate::validate_pool(&defaults.spec()).is_ok());
    let embedded = PoolDefaults {
        postgres_url: None,
        replicas: 1,
        ..defaults
    };
    assert_eq!(
        serde_json::to_value(embedded.spec()).unwrap()["storage"]["type"],
        "embedded"
    );
}

/// The config a pool reconcile applied (its config Secret), as JSON.
fn applied_config(calls: &[Call]) -> Value {
    let call = calls
        .iter()
        .find(|c| c.is("PATCH", &format!("{NS}/secrets/causeway-default-config")))
        .unwrap();
    let data = call.body["data"]["config.json"].as_str().unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

const BRIDGE_PATH: &str = "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders";

// Issue 18: every Bridge gets the finalizer; a deleted one stays in its pool's config,
// draining, with its progress in status, until the worker counts no job left; then the
// finalizer goes.
#[tokio::test]
async fn a_deleted_bridge_drains_then_its_finalizer_goes() {
    let spec = json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]});
    let f = fixture(World {
        pools: vec![pool("default", json!({}))],
        bridges: vec![bridge("orders", spec.clone())],
        ..World::default()
    });
    let b = f.ctx.stores.bridges.state()[0].clone();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let add = f
        .calls()
        .into_iter()
        .find(|c| c.is("PATCH", BRIDGE_PATH))
        .expect("the finalizer is added");
    assert_eq!(
        add.body,
        json!({"metadata": {"finalizers": ["causeway.dev/drain"]}})
    );

    // Deleted now, with the finalizer.
    let mut deleted = bridge("orders", spec);
    deleted.metadata.finalizers = Some(vec!["causeway.dev/drain".into()]);
    deleted.metadata.deletion_timestamp = Some(crate::controller::pool::now());
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            bridges: vec![deleted],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    let action = reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "a pool with a draining bridge polls its workers"
    );
    let config = applied_config(&f.calls());
    assert_eq!(config["bridges"][0]["name"], "orders");
    assert_eq!(config["bridges"][0]["draining"], true);

    let report = |left: u64| WorkerReport {
        version: "any".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(1),
            jobs_left: Some(left),
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    f.admin
        .reports
        .lock()
        .unwrap()
        .insert("127.0.0.7".into(), Ok(report(2)));
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    f.clear();
    let b = f.ctx.stores.bridges.state()[0].clone();
    let action = reconcile_bridge(b.clone(), f.ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let calls = f.calls();
    let status = status_of(&calls, &format!("{BRIDGE_PATH}/status"));
    assert_eq!(status["deletion"]["phase"], "Draining");
    assert_eq!(status["deletion"]["pendingJobs"], 2);
    assert!(status["deletion"]["deadline"].is_string());
    assert_eq!(
        ready_condition(&status),
        ("False".into(), "Draining".into())
    );
    let ev = calls.iter().find(|c| c.path.ends_with("/events")).unwrap();
    assert_eq!(
        (ev.body["type"].as_str(), ev.body["reason"].as_str()),
        (Some("Normal"), Some("Draining"))
    );
    assert!(
        !calls.iter().any(|c| c.is("PATCH", BRIDGE_PATH)),
        "the finalizer stays while jobs are left"
    );

    // Delivered: the finalizer goes, with a Normal Event.
    f.admin
        .reports
        .lock()
        .unwrap()
        .insert("127.0.0.7".into(), Ok(report(0)));
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let mut with_status = b.as_ref().clone();
    with_status.status = Some(serde_json::from_value(status).unwrap());
    f.clear();
    let action = reconcile_bridge(Arc::new(with_status), f.ctx.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    let calls = f.calls();
    let remove = calls.iter().find(|c| c.is("PATCH", BRIDGE_PATH)).unwrap();
    assert_eq!(remove.body, json!({"metadata": {"finalizers": []}}));
    assert!(calls.iter().any(|c| c.path.ends_with("/events")
        && c.body["type"] == "Normal"
        && c.body["reason"] == "Drained"));
    assert!(!calls.iter().any(|c| c.path.ends_with("/status")));
}

// Issue 18: with policy Discard a deleted Bridge leaves the config and its finalizer goes
// at once; a Bridge deleted after the operator let go is not rendered.
#[tokio::test]
async fn a_discarded_bridge_goes_at_once_and_leaves_the_config() {
    let mut deleted = bridge(
        "orders",
        json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}],
               "deletion": {"policy": "Discard"}}),
    );
    deleted.metadata.finalizers = Some(vec!["causeway.dev/drain".into()]);
    deleted.metadata.deletion_timestamp = Some(crate::controller::pool::now());
    let f = fixture(World {
        pools: vec![pool("default", json!({}))],
        bridges: vec![deleted],
        ..World::default()
    });
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    assert_eq!(applied_config(&f.calls())["bridges"], json!([]));
    f.clear();
    let b = f.ctx.stores.bridges.state()[0].clone();
    reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let remove = calls.iter().find(|c| c.is("PATCH", BRIDGE_PATH)).unwrap();
    assert_eq!(remove.body, json!({"metadata": {"finalizers": []}}));
    assert!(
        calls
            .iter()
            .any(|c| c.path.ends_with("/events") && c.body["reason"] == "Discarded")
    );
}

/// Issue 18: a destination whose circuit breaker is open, then disabled, makes
/// `DestinationsHealthy` False with its name and emits a Warning Event each time the
/// reason changes (open, then disabled); a breaker cycling between open and half-open
/// does not.
#[tokio::test]
async fn an_open_or_disabled_breaker_is_a_warning_and_a_condition() {
    use causeway_crds::config::DestinationReport;
    let b = bridge(
        "orders",
        json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/", "circuitBreaker": {}}]}),
    );
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            bridges: vec![b],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    let desired = f
        .ctx
        .observation("shop", "default")
        .unwrap()
        .desired_version
        .clone();
    let report = |d: DestinationReport| {
        Ok(WorkerReport {
            version: desired.clone(),
            bridges: vec![BridgeReport {
                namespace: "shop".into(),
                name: "orders".into(),
                generation: Some(1),
                destinations: vec![d],
                ..BridgeReport::default()
            }],
            ..WorkerReport::default()
        })
    };
    let open = DestinationReport {
        name: "crm".into(),
        breaker: Some(DestinationReport::OPEN.into()),
        pending: 12,
        ..DestinationReport::default()
    };
    f.admin
        .reports
        .lock()
        .unwrap()
        .insert("127.0.0.7".into(), report(open.clone()));
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    let b = f.ctx.stores.bridges.state()[0].clone();
    f.clear();
    reconcile_bridge(b.clone(), f.ctx.clone()).await.unwrap();
    let calls = f.calls();
    let path = "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status";
    let status = status_of(&calls, path);
    let health = |s: &serde_json::Value| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DestinationsHealthy")
            .cloned()
            .unwrap()
    };
    let h = health(&status);
    assert_eq!(
        (h["status"].as_str(), h["reason"].as_str()),
        (Some("False"), Some("CircuitOpen"))
    );
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .ends_with("wait for its probe: crm"),
        "{h}"
    );
    assert_eq!(status["destinations"][0]["breaker"], "open");
    let warning = |calls: &[Call], reason: &str| {
        calls.iter().any(|c| {
            c.method == "POST"
                && c.path.ends_with("/events")
                && c.body["type"] == "Warning"
                && c.body["reason"] == reason
        })
    };
    assert!(warning(&calls, "CircuitOpen"), "{calls:#?}");

    // Half-open on the next report: the same condition, no new Event.
    let mut seen = b.as_ref().clone();
    seen.status = Some(serde_json::from_value(status).unwrap());
    f.admin.reports.lock().unwrap().insert(
        "127.0.0.7".into(),
        report(DestinationReport {
            breaker: Some(DestinationReport::HALF_OPEN.into()),
            ..open.clone()
        }),
    );
    reconcile_pool(p.clone(), f.ctx.clone()).await.unwrap();
    f.clear();
    reconcile_bridge(Arc::new(seen.clone()), f.ctx.clone())
        .await
        .unwrap();
    assert!(
        !f.calls().iter().any(|c| c.path.ends_with("/events")),
        "no Event while the breaker probes"
    );

    // Disabled: paused with the breaker's reason, told apart from a 410.
    f.admin.reports.lock().unwrap().insert(
        "127.0.0.7".into(),
        report(DestinationReport {
            paused: true,
            paused_reason: Some(DestinationReport::DISABLED.into()),
            breaker: None,
            ..open
        }),
    );
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    f.clear();
    reconcile_bridge(Arc::new(seen), f.ctx.clone())
        .await
        .unwrap();
    let calls = f.calls();
    let status = status_of(&calls, path);
    let h = health(&status);
    assert_eq!(h["reason"], "DestinationsDisabled");
    assert!(
        h["message"]
            .as_str()
            .unwrap()
            .contains("disabled by the circuit breaker")
            && !h["message"].as_str().unwrap().contains("410"),
        "{h}"
    );
    assert_eq!(status["destinations"][0]["pausedReason"], "Disabled");
    assert!(warning(&calls, "DestinationsDisabled"), "{calls:#?}");
}

/// A render wakes only the Bridges whose status it changes, and those draining: at 10,000
/// Bridges, waking all of them on every render was 10,000 reconciles that wrote nothing.
#[tokio::test]
async fn a_render_wakes_only_the_bridges_whose_status_it_changes() {
    let spec = json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]});
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            bridges: vec![
                bridge("fresh", spec.clone()),
                bridge("current", spec.clone()),
                bridge("leaving", spec.clone()),
            ],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let obs = f.ctx.observation("shop", "default").unwrap();
    let now = super::pool::now();

    let fresh = Arc::new(bridge("fresh", spec.clone()));
    // What its reconcile wrote last time: the same render gives the same status.
    let mut current = bridge("current", spec.clone());
    current.status = bridge_status(&current, true, Some(&obs), &now);
    assert!(current.status.is_some(), "the render saw it");
    // A Bridge being deleted polls its jobs left whatever its status says.
    let mut leaving = bridge("leaving", spec.clone());
    leaving.status = bridge_status(&leaving, true, Some(&obs), &now);
    leaving.metadata.deletion_timestamp = Some(now.clone());
    // Another pool's Bridge is not this render's business.
    let elsewhere = bridge(
        "elsewhere",
        json!({"pool": "other", "destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]}),
    );

    let woken = bridges_to_wake(
        &[
            fresh,
            Arc::new(current),
            Arc::new(leaving),
            Arc::new(elsewhere),
        ],
        &obs,
        &now,
    );
    let names: Vec<&str> = woken.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["fresh", "leaving"]);
}

/// A Bridge waiting for its worker does not poll: the pool wakes it when its observation
/// changes the Bridge's status (above).
#[tokio::test]
async fn a_pending_bridge_waits_for_its_pool_instead_of_polling() {
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            bridges: vec![bridge(
                "orders",
                json!({"destinations": [{"name": "crm", "url": "http://127.0.0.1:9/"}]}),
            )],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let b = f.ctx.stores.bridges.state()[0].clone();
    f.clear();
    let action = reconcile_bridge(b, f.ctx.clone()).await.unwrap();
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/bridges/orders/status",
    );
    assert_eq!(ready_condition(&status), ("False".into(), "Pending".into()));
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

/// A Plugin waiting for its worker does not poll either: the pools of its namespace wake it
/// when what they observe changes.
#[tokio::test]
async fn a_pending_plugin_waits_for_its_pools_instead_of_polling() {
    let pl: Plugin = serde_json::from_value(json!({
        "apiVersion": "causeway.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": "enrich", "namespace": "shop", "uid": "uid-p", "generation": 1},
        "spec": {"source": {"http": {"url": "http://127.0.0.1:9/p.wasm", "sha256": "a".repeat(64)}}},
    }))
    .unwrap();
    let f = fixture(
        World {
            pools: vec![pool("default", json!({}))],
            plugins: vec![pl],
            ..World::default()
        }
        .with_worker("causeway-default-0", "default", "127.0.0.7"),
    );
    let p = f.ctx.stores.pools.state()[0].clone();
    reconcile_pool(p, f.ctx.clone()).await.unwrap();
    let pl = f.ctx.stores.plugins.state()[0].clone();
    f.clear();
    let action = reconcile_plugin(pl, f.ctx.clone()).await.unwrap();
    let status = status_of(
        &f.calls(),
        "/apis/causeway.dev/v1alpha1/namespaces/shop/plugins/enrich/status",
    );
    assert_eq!(ready_condition(&status), ("False".into(), "Pending".into()));
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}
