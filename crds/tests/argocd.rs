//! The Argo CD health script (docs/argocd/health.lua) run by a real Lua interpreter
//! (scripts/lua.sh installs Debian's lua5.4 when missing) against the status objects of
//! the three kinds, built from the crate's own status types.

use std::path::{Path, PathBuf};
use std::process::Command;

use causeway_crds::{BridgeStatus, PluginStatus, WorkerPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lua() -> String {
    let script = repo().join("scripts/lua.sh");
    let installed = Command::new(&script).arg("install").status().unwrap();
    assert!(installed.success(), "scripts/lua.sh install failed");
    let out = Command::new(&script).arg("path").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A JSON value as a Lua table constructor.
fn to_lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!(
            "{{{}}}",
            a.iter().map(to_lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", to_lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the script with `obj` bound to `object`; returns (status, message).
fn health(lua: &str, object: &Value) -> (String, String) {
    let script = repo().join("docs/argocd/health.lua");
    let chunk = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\n\", hs.message or \"\")",
        to_lua(object),
        script.display().to_string()
    );
    let out = Command::new(lua).arg("-e").arg(&chunk).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap_or((&text, ""));
    (status.to_string(), message.to_string())
}

fn ready(status: &str, reason: &str, message: &str) -> Vec<Condition> {
    let t = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    vec![
        Condition {
            type_: "Accepted".into(),
            status: "True".into(),
            reason: "Accepted".into(),
            message: String::new(),
            observed_generation: Some(2),
            last_transition_time: t.clone(),
        },
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(2),
            last_transition_time: t,
        },
    ]
}

/// Objects of the three kinds at generation 2 with these conditions (None: no status).
fn objects(conditions: Option<Vec<Condition>>, observed: i64) -> Vec<(&'static str, Value)> {
    let obj = |kind: &str, status: Option<Value>| {
        let mut o = json!({"apiVersion": "causeway.dev/v1alpha1", "kind": kind,
            "metadata": {"name": "x", "namespace": "shop", "generation": 2}});
        if let Some(s) = status {
            o["status"] = s;
        }
        o
    };
    let c = conditions.clone();
    vec![
        (
            "Bridge",
            obj(
                "Bridge",
                c.clone().map(|conditions| {
                    serde_json::to_value(BridgeStatus {
                        observed_generation: Some(observed),
                        conditions,
                        ..Default::default()
                    })
                    .unwrap()
                }),
            ),
        ),
        (
            "Plugin",
            obj(
                "Plugin",
                c.clone().map(|conditions| {
                    serde_json::to_value(PluginStatus {
                        observed_generation: Some(observed),
                        conditions,
                        ..Default::default()
                    })
                    .unwrap()
                }),
            ),
        ),
        (
            "WorkerPool",
            obj(
                "WorkerPool",
                c.map(|conditions| {
                    serde_json::to_value(WorkerPoolStatus {
                        observed_generation: Some(observed),
                        conditions,
                        ..Default::default()
                    })
                    .unwrap()
                }),
            ),
        ),
    ]
}

#[test]
fn the_argocd_health_script_maps_ready_to_argo_health_for_every_kind() {
    let lua = lua();
    let cases: Vec<(Option<Vec<Condition>>, i64, &str, &str)> = vec![
        (None, 2, "Progressing", "Waiting"),
        (
            Some(ready("True", "Ready", "serving")),
            2,
            "Healthy",
            "serving",
        ),
        (
            Some(ready("True", "Ready", "serving")),
            1,
            "Progressing",
            "generation 2",
        ),
        (
            Some(ready("False", "Pending", "waiting for the pool")),
            2,
            "Progressing",
            "Pending",
        ),
        (
            Some(ready("Unknown", "Pending", "")),
            2,
            "Progressing",
            "Pending",
        ),
        (
            Some(ready("False", "Suspended", "suspended")),
            2,
            "Suspended",
            "Suspended",
        ),
        (
            Some(ready("False", "PluginNotFound", "plugin loyalty not found")),
            2,
            "Degraded",
            "PluginNotFound: plugin loyalty not found",
        ),
        (
            Some(ready("False", "StoreUnavailable", "disk full")),
            2,
            "Degraded",
            "StoreUnavailable",
        ),
    ];
    // Issue 18: a Bridge being deleted drains its queued jobs; Argo CD waits for its
    // finalizer, and shows it as progressing with what is left, not as degraded.
    let mut draining = objects(Some(ready("False", "Draining", "being deleted")), 2)
        .remove(0)
        .1;
    draining["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    draining["status"]["deletion"] = serde_json::to_value(causeway_crds::bridge::DeletionStatus {
        phase: "Draining".into(),
        pending_jobs: Some(3),
        deadline: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
        counted_at: None,
    })
    .unwrap();
    let (status, got) = health(&lua, &draining);
    assert_eq!(status, "Progressing", "{draining}");
    assert!(
        got.contains("Draining: 3 jobs left, until 1970-01-01T00:00:00Z"),
        "{got:?}"
    );
    let mut unknown = draining.clone();
    unknown["status"]["deletion"] = json!({"phase": "Draining"});
    assert_eq!(
        health(&lua, &unknown),
        ("Progressing".into(), "Draining: unknown jobs left".into())
    );
    for (conditions, observed, want, message) in cases {
        for (kind, object) in objects(conditions.clone(), observed) {
            let (status, got) = health(&lua, &object);
            assert_eq!(status, want, "{kind}: {object}");
            assert!(got.contains(message), "{kind}: {got:?} lacks {message:?}");
        }
    }
}
