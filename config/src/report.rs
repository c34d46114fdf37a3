//! What a worker says about the configuration it runs: the body of its
//! `GET /api/v1/config`, which the operator folds into the status of pools, bridges and
//! plugins. One type for both sides:
//!
//! ```json
//! {"version": "3f2a…", "pool": "default", "namespace": "shop", "loadedAt": "2026-01-01T00:00:00Z",
//!  "bridges": [{"namespace": "shop", "name": "orders", "generation": 3, "path": "/hooks/shop/orders",
//!               "ready": true, "suspended": false, "error": null}],
//!  "plugins": [{"namespace": "shop", "name": "enrich", "generation": 1, "route": null, "ready": true,
//!               "error": null, "digest": "sha256:…", "size": 12345}],
//!  "errors": [{"kind": "Plugin", "namespace": "shop", "name": "bad", "reason": "LoadError", "message": "…"}],
//!  "store": {"engine": "postgres", "healthy": true, "message": "postgres at db.shop.svc:5432/causeway"}}
//! ```
//!
//! Every field has a default, so a report from a worker older than the operator (fewer
//! fields) still parses, and what is missing counts as unknown. An entry of `errors` that
//! does not parse (a kind this side does not know, from a newer worker) is left out rather
//! than failing the whole report.

use serde::{Deserialize, Deserializer, Serialize};

use crate::key::{Kind, ObjectKey};

/// A problem with one item: the renderer leaves the item out of the config, or the worker
/// could not apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub kind: Kind,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// A stable reason such as `SecretNotFound` (see [`crate::reason`]).
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl ItemError {
    pub fn new(
        kind: Kind,
        key: ObjectKey,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ItemError {
            kind,
            namespace: key.namespace,
            name: key.name,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }

    /// True when this error is about `kind` `key`.
    pub fn is_about(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.kind == kind && self.namespace == key.namespace && self.name == key.name
    }
}

/// The body of a worker's `GET /api/v1/config`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// Version of the config the worker runs (`WorkerConfig.version`); empty before the
    /// first.
    #[serde(default)]
    pub version: String,
    /// The pool the config is for (`local` in local mode).
    #[serde(default)]
    pub pool: String,
    /// The pool's namespace (empty in local mode).
    #[serde(default)]
    pub namespace: String,
    /// When the running config was applied (RFC 3339).
    #[serde(default)]
    pub loaded_at: String,
    /// Bridges the running config serves.
    #[serde(default)]
    pub bridges: Vec<BridgeReport>,
    /// Plugins the running config loads.
    #[serde(default)]
    pub plugins: Vec<PluginReport>,
    /// Items the renderer left out or the worker could not apply.
    #[serde(default, deserialize_with = "known_items")]
    pub errors: Vec<ItemError>,
    /// The store the worker runs on; `None` from a worker that predates the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreReport>,
}

/// The store a worker runs on and whether it can write to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    /// [`StoreReport::EMBEDDED`] or [`StoreReport::POSTGRES`] (another name from a newer
    /// worker is passed on as it is).
    #[serde(default)]
    pub engine: String,
    /// Whether writes work. False while the database is unreachable (postgres) or after an
    /// I/O error such as a full disk (embedded); the worker is not ready meanwhile.
    #[serde(default = "healthy_by_default")]
    pub healthy: bool,
    /// Where the store is and, when unhealthy, what is wrong: it names the host, never a
    /// user or password (see [`postgres_location`]).
    #[serde(default)]
    pub message: String,
}

fn healthy_by_default() -> bool {
    true
}

impl StoreReport {
    /// The on-disk store of one worker.
    pub const EMBEDDED: &'static str = "embedded";
    /// A PostgreSQL database shared by the pool's workers.
    pub const POSTGRES: &'static str = "postgres";

    /// The report of a store `engine` at `location` (already free of credentials).
    pub fn new(engine: &str, location: &str, healthy: bool) -> Self {
        let at = if location.is_empty() {
            engine.to_string()
        } else {
            format!("{engine} at {location}")
        };
        let message = if healthy {
            at
        } else if engine == Self::POSTGRES {
            format!("{at}: unreachable, the worker cannot write")
        } else {
            format!("{at}: the worker cannot write")
        };
        StoreReport {
            engine: engine.to_string(),
            healthy,
            message,
        }
    }
}

/// Where a PostgreSQL connection string points, without credentials: `host:port/dbname`
/// (the port and database only when given). Takes both the URL form
/// (`postgres://user:secret@db:5432/causeway?sslmode=require`) and libpq's key/value form
/// (`host=db port=5432 dbname=causeway password=secret`); a user, password or query
/// parameter never appears in the result, so it may go into logs, status and events.
pub fn postgres_location(conn: &str) -> String {
    let conn = conn.trim();
    if let Some(rest) = conn
        .strip_prefix("postgresql://")
        .or_else(|| conn.strip_prefix("postgres://"))
    {
        // After the last `@` anywhere, not only in the authority: a password written with
        // an unencoded `/`, `?` or `@` must not leak, and a wrong host is the lesser harm.
        let rest = rest.rsplit_once('@').map_or(rest, |(_user, after)| after);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (hosts, tail) = rest.split_at(end);
        let db = tail
            .strip_prefix('/')
            .map(|t| &t[..t.find(['?', '#']).unwrap_or(t.len())])
            .unwrap_or("");
        let hosts = if hosts.is_empty() { "localhost" } else { hosts };
        return if db.is_empty() {
            hosts.to_string()
        } else {
            format!("{hosts}/{db}")
        };
    }
    // Key/value form: keep host, port and dbname, drop everything else (values may be
    // quoted with single quotes; a quoted value containing spaces is skipped whole).
    let mut host = None;
    let mut port = None;
    let mut db = None;
    let mut words = conn.split_whitespace();
    while let Some(word) = words.next() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        if value.starts_with('\'') && !(value.len() > 1 && value.ends_with('\'')) {
            // A quoted value with spaces: skip to its closing quote.
            for w in words.by_ref() {
                if w.ends_with('\'') {
                    break;
                }
            }
            continue;
        }
        let value = value.trim_matches('\'');
        match key {
            "host" | "hostaddr" if host.is_none() => host = Some(value),
            "port" => port = Some(value),
            "dbname" => db = Some(value),
            _ => {}
        }
    }
    let mut out = host.unwrap_or("localhost").to_string();
    if let Some(p) = port {
        out = format!("{out}:{p}");
    }
    if let Some(d) = db {
        out = format!("{out}/{d}");
    }
    out
}

impl WorkerReport {
    /// The error the worker reports for one item.
    pub fn error_for(&self, kind: Kind, key: &ObjectKey) -> Option<&ItemError> {
        self.errors.iter().find(|e| e.is_about(kind, key))
    }

    /// The report of one bridge.
    pub fn bridge(&self, key: &ObjectKey) -> Option<&BridgeReport> {
        self.bridges
            .iter()
            .find(|b| b.namespace == key.namespace && b.name == key.name)
    }

    /// The report of one plugin.
    pub fn plugin(&self, key: &ObjectKey) -> Option<&PluginReport> {
        self.plugins
            .iter()
            .find(|p| p.namespace == key.namespace && p.name == key.name)
    }
}

/// One bridge of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeReport {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// Generation of the Bridge the config was rendered from.
    #[serde(default)]
    pub generation: Option<i64>,
    /// The path it is served at.
    #[serde(default)]
    pub path: String,
    /// Applied without error.
    #[serde(default)]
    pub ready: bool,
    /// Suspended, by the config or through the admin API.
    #[serde(default)]
    pub suspended: bool,
    /// Why it could not be applied.
    #[serde(default)]
    pub error: Option<String>,
    /// Its destinations on this worker: paused or not, jobs waiting, and the last hour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationReport>,
    /// Only for a bridge the config marks draining (its Bridge is being deleted): every
    /// job still queued for it, steps jobs and paused or held ones included, counted when
    /// the report was asked for (in a shared store: the pool's). `None` for a bridge that
    /// is not draining, or when the store could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_left: Option<u64>,
}

/// One destination of a bridge on one worker.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationReport {
    pub name: String,
    /// Paused until resumed: by a 410, or disabled by its circuit breaker.
    #[serde(default)]
    pub paused: bool,
    /// Why it is paused: [`DestinationReport::GONE`] or [`DestinationReport::DISABLED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// Its circuit breaker when not closed: [`DestinationReport::OPEN`] or
    /// [`DestinationReport::HALF_OPEN`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// Jobs waiting for an attempt (in a shared store: the pool's, seen by every worker).
    #[serde(default)]
    pub pending: u64,
    /// In the last hour, by this worker: deliveries that got a 2xx, attempts that failed,
    /// deliveries dead-lettered.
    #[serde(default)]
    pub delivered: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub dead: u64,
}

impl DestinationReport {
    /// Paused by a 410 Gone.
    pub const GONE: &'static str = "Gone";
    /// Paused by its circuit breaker after failing for `disableAfter`.
    pub const DISABLED: &'static str = "Disabled";
    /// The breaker is open: no attempt until the probe.
    pub const OPEN: &'static str = "open";
    /// The breaker lets one probe attempt through.
    pub const HALF_OPEN: &'static str = "halfOpen";
}

impl BridgeReport {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// One plugin of the running config.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginReport {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    /// Generation of the Plugin the config was rendered from.
    #[serde(default)]
    pub generation: Option<i64>,
    /// The public route, if any.
    #[serde(default)]
    pub route: Option<String>,
    /// Loaded without error.
    #[serde(default)]
    pub ready: bool,
    /// Why it could not be loaded.
    #[serde(default)]
    pub error: Option<String>,
    /// Digest of the component loaded (`sha256:<hex>`).
    #[serde(default)]
    pub digest: Option<String>,
    /// Size of the component in bytes.
    #[serde(default, alias = "sizeBytes")]
    pub size: Option<u64>,
}

impl PluginReport {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// The entries of `errors` that parse; see the module documentation.
fn known_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ItemError>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Known(ItemError),
        Unknown(serde::de::IgnoredAny),
    }
    let entries = Vec::<Entry>::deserialize(d)?;
    Ok(entries
        .into_iter()
        .filter_map(|e| match e {
            Entry::Known(item) => Some(item),
            Entry::Unknown(_) => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn worker_side() -> WorkerReport {
        WorkerReport {
            version: "3f2a".into(),
            pool: "default".into(),
            namespace: "shop".into(),
            loaded_at: "2026-01-01T00:00:00Z".into(),
            bridges: vec![BridgeReport {
                namespace: "shop".into(),
                name: "orders".into(),
                generation: Some(3),
                path: "/hooks/shop/orders".into(),
                ready: true,
                suspended: false,
                error: None,
                destinations: vec![],
                jobs_left: None,
            }],
            plugins: vec![PluginReport {
                namespace: "shop".into(),
                name: "enrich".into(),
                generation: None,
                route: Some("/enrich".into()),
                ready: false,
                error: Some("compile: invalid magic".into()),
                digest: Some("sha256:ab".into()),
                size: Some(10),
            }],
            errors: vec![ItemError::new(
                Kind::Plugin,
                ObjectKey::new("shop", "enrich"),
                "LoadError",
                "compile: invalid magic",
            )],
            store: Some(StoreReport::new(
                StoreReport::POSTGRES,
                "db.shop.svc:5432/causeway",
                false,
            )),
        }
    }

    /// The worker's value, as JSON, parsed by the operator: the same value, in the shape
    /// workers sent before the type existed (built with `json!`), so that running workers
    /// and operators of either version still understand each other.
    #[test]
    fn worker_report_round_trips_in_the_wire_shape() {
        let sent = worker_side();
        let wire = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            wire,
            json!({
                "version": "3f2a", "pool": "default", "namespace": "shop", "loadedAt": "2026-01-01T00:00:00Z",
                "bridges": [{"namespace": "shop", "name": "orders", "generation": 3, "path": "/hooks/shop/orders",
                             "ready": true, "suspended": false, "error": null}],
                "plugins": [{"namespace": "shop", "name": "enrich", "generation": null, "route": "/enrich",
                             "ready": false, "error": "compile: invalid magic", "digest": "sha256:ab", "size": 10}],
                "errors": [{"kind": "Plugin", "namespace": "shop", "name": "enrich", "reason": "LoadError",
                            "message": "compile: invalid magic"}],
                "store": {"engine": "postgres", "healthy": false,
                          "message": "postgres at db.shop.svc:5432/causeway: unreachable, the worker cannot write"},
            })
        );
        let text = serde_json::to_string(&sent).unwrap();
        let parsed: WorkerReport = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, sent);
        let key = ObjectKey::new("shop", "enrich");
        assert_eq!(
            parsed
                .error_for(Kind::Plugin, &key)
                .map(|e| e.reason.as_str()),
            Some("LoadError")
        );
        assert!(parsed.error_for(Kind::Bridge, &key).is_none());
        assert_eq!(
            parsed
                .bridge(&"shop/orders".parse().unwrap())
                .and_then(|b| b.generation),
            Some(3)
        );
        assert_eq!(parsed.plugin(&key).and_then(|p| p.size), Some(10));
    }

    #[test]
    fn older_and_newer_workers_still_parse() {
        assert_eq!(
            serde_json::from_str::<WorkerReport>("{}").unwrap(),
            WorkerReport::default()
        );
        let r: WorkerReport = serde_json::from_value(json!({
            "version": "v1",
            "bridges": [{"namespace": "shop", "name": "orders"}],
            "plugins": [{"namespace": "shop", "name": "enrich", "sizeBytes": 7, "newField": 1}],
            "errors": [
                {"kind": "Stream", "namespace": "shop", "name": "s", "reason": "X", "message": "from a newer worker"},
                {"kind": "Bridge", "namespace": "shop", "name": "orders", "message": "no reason"},
            ],
            "somethingNew": true,
        }))
        .unwrap();
        assert_eq!(r.version, "v1");
        assert_eq!(r.bridges[0].generation, None);
        assert_eq!(r.plugins[0].size, Some(7));
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].kind, Kind::Bridge);
        assert_eq!(r.errors[0].reason, "");
        assert_eq!(r.store, None, "a worker older than the store section");
        let r: WorkerReport =
            serde_json::from_value(json!({"store": {"engine": "tikv", "newField": 1}})).unwrap();
        assert_eq!(
            r.store,
            Some(StoreReport {
                engine: "tikv".into(),
                healthy: true,
                message: String::new(),
            })
        );
    }

    #[test]
    fn a_postgres_location_names_the_host_and_never_the_credentials() {
        for (conn, want) in [
            (
                "postgres://causeway:s3cr3t@db.shop.svc:5432/causeway?sslmode=require&password=s3cr3t",
                "db.shop.svc:5432/causeway",
            ),
            ("postgresql://db/app", "db/app"),
            ("postgres://u:s3cr3t@[::1]:5433", "[::1]:5433"),
            ("postgres://u:s3cr3t@a:1,b:2/app#x", "a:1,b:2/app"),
            ("postgres:///app?host=/run/pg", "localhost/app"),
            ("postgres://u:s3/cr3t@db/app", "db/app"),
            ("postgres://u:s3cr3t?@x@db:5432/app", "db:5432/app"),
            (
                "host=db port=5432 user=causeway password=s3cr3t dbname=app sslmode=verify-full",
                "db:5432/app",
            ),
            ("password='s3cr3t with space' host='db'", "db"),
        ] {
            let got = postgres_location(conn);
            assert_eq!(got, want, "{conn}");
            assert!(!got.contains("s3cr3t") && !got.contains("causeway@"));
        }
        let r = StoreReport::new(
            StoreReport::POSTGRES,
            &postgres_location("postgres://u:s3cr3t@db:5432/app"),
            true,
        );
        assert_eq!(r.message, "postgres at db:5432/app");
        assert!(
            StoreReport::new(StoreReport::EMBEDDED, "", false)
                .message
                .contains("cannot write")
        );
    }
}
