use super::*;
use causeway_crds::{BridgeSpec, PluginSpec};
use k8s_openapi::jiff::Timestamp;
use kube::core::ObjectMeta;

fn t(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn bridge(name: &str, generation_: i64, pool: Option<&str>) -> Bridge {
    let mut spec: BridgeSpec = serde_json::from_value(serde_json::json!({
        "destinations": [{"name": "d", "url": "http://127.0.0.1:1/"}]
    }))
    .unwrap();
    spec.pool = pool.map(str::to_string);
    Bridge {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            generation: Some(generation_),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn plugin(name: &str, generation_: i64, pool: Option<&str>) -> Plugin {
    let mut spec: PluginSpec = serde_json::from_value(serde_json::json!({
        "source": {"http": {"url": "http://127.0.0.1:1/p.wasm", "sha256": "a".repeat(64)}}
    }))
    .unwrap();
    spec.pool = pool.map(str::to_string);
    Plugin {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            generation: Some(generation_),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn obs(pool: &str) -> PoolObservation {
    PoolObservation {
        namespace: "shop".into(),
        pool: pool.into(),
        desired_version: "v2".into(),
        ..PoolObservation::default()
    }
}

/// A ready pod with `report`, indexed as the pool reconciler builds it.
fn pod(name: &str, report: WorkerReport) -> PodObservation {
    PodObservation {
        name: name.into(),
        ip: Some("127.0.0.2".into()),
        ready: true,
        report: Some(Ok(report)),
        index: Default::default(),
    }
    .indexed()
}

// Issue 15: a Bridge finds its own entry in a pod's report through the index, as it does by
// scanning, and an absent one is absent.
#[test]
fn a_bridges_report_is_found_through_the_index() {
    let report = WorkerReport {
        bridges: (0..1_000)
            .rev()
            .map(|i| BridgeReport {
                namespace: "shop".into(),
                name: format!("b{i}"),
                generation: Some(i),
                ..BridgeReport::default()
            })
            .collect(),
        ..WorkerReport::default()
    };
    let indexed = pod("a", report.clone());
    assert_eq!(indexed.index.len(), 1_000);
    let plain = PodObservation {
        index: Default::default(),
        ..indexed.clone()
    };
    for i in [0, 1, 500, 999] {
        let key = ObjectKey::new("shop", format!("b{i}"));
        let got = indexed.bridge_report(&key).unwrap();
        assert_eq!(got.generation, Some(i));
        assert_eq!(Some(got), plain.bridge_report(&key));
    }
    let missing = ObjectKey::new("shop", "b1000");
    assert!(indexed.bridge_report(&missing).is_none());
    assert!(
        indexed
            .bridge_report(&ObjectKey::new("other", "b1"))
            .is_none()
    );
}

fn cond<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
    c.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn bridge_is_ready_when_every_ready_pod_serves_its_generation() {
    let b = bridge("orders", 3, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(3));
    o.bridges.insert("orders".into(), Some(3));
    let good = WorkerReport {
        version: "v2".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(3),
            error: None,
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    let old = WorkerReport {
        version: "v1".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(2),
            error: None,
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    o.pods = vec![pod("a", good.clone()), pod("b", old)];

    let s = bridge_status(&b, true, Some(&o), &t(100)).unwrap();
    assert_eq!(cond(&s.conditions, "Accepted").status, "True");
    let r = cond(&s.conditions, "Ready");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "Pending"));
    assert!(r.message.contains("1/2"), "{}", r.message);
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(
        s.url.as_deref(),
        Some("http://causeway-default.shop.svc:8080/hooks/shop/orders")
    );
    assert_eq!(s.pool.as_deref(), Some("default"));
    assert_eq!(s.config_version.as_deref(), Some("v2"));

    o.pods[1] = pod("b", good);
    let s = bridge_status(&b, true, Some(&o), &t(100)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").status, "True");
}

#[test]
fn a_worker_reporting_only_its_version_serves_the_desired_config() {
    let b = bridge("orders", 1, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(1));
    o.bridges.insert("orders".into(), Some(1));
    o.pods = vec![pod(
        "a",
        WorkerReport {
            version: "v2".into(),
            ..WorkerReport::default()
        },
    )];
    let s = bridge_status(&b, true, Some(&o), &t(1)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").status, "True");
}

#[test]
fn bridge_problem_becomes_both_conditions_with_its_reason() {
    let b = bridge("orders", 1, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(1));
    o.problems.push(Problem {
        kind: Kind::Bridge,
        namespace: "shop".into(),
        name: "orders".into(),
        reason: "SecretNotFound".into(),
        message: "Secret \"hmac\" not found in namespace shop".into(),
    });
    let s = bridge_status(&b, true, Some(&o), &t(1)).unwrap();
    for c in ["Accepted", "Ready"] {
        let c = cond(&s.conditions, c);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "SecretNotFound")
        );
    }
}

#[test]
fn bridge_waits_for_a_render_of_its_current_generation() {
    let b = bridge("orders", 2, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(1));
    o.bridges.insert("orders".into(), Some(1));
    assert!(bridge_status(&b, true, Some(&o), &t(1)).is_none());
    assert!(bridge_status(&b, true, None, &t(1)).is_none());
}

#[test]
fn missing_pool_is_pool_not_found_unless_it_is_default() {
    let b = bridge("orders", 1, Some("fast"));
    let s = bridge_status(&b, false, None, &t(1)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").reason, "PoolNotFound");
    let b = bridge("orders", 1, None);
    let s = bridge_status(&b, false, None, &t(1)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").reason, "Pending");
}

#[test]
fn worker_error_for_a_bridge_is_a_load_error() {
    let b = bridge("orders", 1, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(1));
    o.bridges.insert("orders".into(), Some(1));
    let mut r = WorkerReport {
        version: "v2".into(),
        ..WorkerReport::default()
    };
    r.errors.push(ItemError {
        kind: Kind::Bridge,
        namespace: "shop".into(),
        name: "orders".into(),
        reason: "InvalidSpec".into(),
        message: "filter: undeclared reference".into(),
    });
    o.pods = vec![pod("a", r)];
    let s = bridge_status(&b, true, Some(&o), &t(1)).unwrap();
    let c = cond(&s.conditions, "Ready");
    assert_eq!(c.reason, "LoadError");
    assert!(c.message.contains("undeclared"));
}

#[test]
fn same_state_twice_keeps_last_transition_time() {
    let mut b = bridge("orders", 1, Some("fast"));
    let first = bridge_status(&b, false, None, &t(10)).unwrap();
    b.status = Some(first.clone());
    let second = bridge_status(&b, false, None, &t(99)).unwrap();
    assert_eq!(
        first, second,
        "an unchanged state must produce an identical status (no write)"
    );
}

#[test]
fn pool_status_counts_pods_and_versions() {
    let p = crate::builders::test_support::pool(
        "default",
        crate::builders::test_support::default_spec(),
    );
    let mut o = obs("default");
    let s = pool_status(&p, Some(&o), None, &t(1));
    assert_eq!(cond(&s.conditions, "Ready").message, "0/1 workers ready");
    assert_eq!(
        s.selector.as_deref(),
        Some("app.kubernetes.io/name=causeway-worker,causeway.dev/pool=default")
    );
    assert_eq!(s.config_version.as_deref(), Some("v2"));

    o.pods = vec![pod(
        "a",
        WorkerReport {
            version: "v1".into(),
            ..WorkerReport::default()
        },
    )];
    let s = pool_status(&p, Some(&o), None, &t(1));
    assert_eq!((s.replicas, s.ready_replicas), (1, 1));
    assert_eq!(cond(&s.conditions, "Ready").status, "False");

    o.pods = vec![pod(
        "a",
        WorkerReport {
            version: "v2".into(),
            ..WorkerReport::default()
        },
    )];
    let s = pool_status(&p, Some(&o), None, &t(1));
    assert_eq!(cond(&s.conditions, "Ready").status, "True");
    assert_eq!(s.observed_generation, Some(1));

    let s = pool_status(
        &p,
        Some(&o),
        Some((APPLY_FAILED, "deployments is forbidden".into())),
        &t(1),
    );
    assert_eq!(cond(&s.conditions, "Ready").reason, APPLY_FAILED);
}

#[test]
fn plugin_status_lists_serving_pools_digest_and_load_errors() {
    let pl = plugin("enrich", 4, None);
    let pools: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let mut a = obs("a");
    let mut b = obs("b");
    for o in [&mut a, &mut b] {
        o.seen.insert((Kind::Plugin, "enrich".into()), Some(4));
        o.plugins.insert(
            "enrich".into(),
            RenderedPlugin {
                generation: Some(4),
                digest: Some(format!("sha256:{}", "a".repeat(64))),
            },
        );
    }
    let loaded = |err: Option<&str>| WorkerReport {
        version: "v2".into(),
        plugins: vec![PluginReport {
            namespace: "shop".into(),
            name: "enrich".into(),
            generation: Some(4),
            digest: Some("sha256:feed".into()),
            size: Some(1234),
            error: err.map(str::to_string),
            ..PluginReport::default()
        }],
        ..WorkerReport::default()
    };
    a.pods = vec![pod("a-1", loaded(None))];
    b.pods = vec![pod("b-1", loaded(None))];
    let s = plugin_status(&pl, &pools, &[&a, &b], &t(1)).unwrap();
    assert_eq!(s.pools, vec!["a", "b"]);
    assert_eq!(s.digest.as_deref(), Some("sha256:feed"));
    assert_eq!(s.size_bytes, Some(1234));
    assert_eq!(cond(&s.conditions, "Ready").status, "True");

    b.pods = vec![pod(
        "b-1",
        loaded(Some("sha256 digest mismatch: expected aaaa")),
    )];
    let s = plugin_status(&pl, &pools, &[&a, &b], &t(1)).unwrap();
    let c = cond(&s.conditions, "Ready");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DigestMismatch")
    );
    assert!(c.message.contains("pool b"));
}

#[test]
fn plugin_in_a_missing_pool_or_unused() {
    let pools: BTreeSet<String> = ["a".to_string()].into();
    let s = plugin_status(&plugin("p", 1, Some("gone")), &pools, &[], &t(1)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").reason, "PoolNotFound");

    let mut a = obs("a");
    a.seen.insert((Kind::Plugin, "p".into()), Some(1));
    let s = plugin_status(&plugin("p", 1, None), &pools, &[&a], &t(1)).unwrap();
    assert_eq!(cond(&s.conditions, "Accepted").status, "True");
    assert_eq!(cond(&s.conditions, "Ready").reason, "Pending");
    assert!(s.pools.is_empty());

    // No pool has rendered generation 2 yet: nothing to say.
    assert!(plugin_status(&plugin("p", 2, None), &pools, &[&a], &t(1)).is_none());
}

#[test]
fn a_bridge_status_does_not_change_when_only_other_bridges_changed_the_pool() {
    let mut b = bridge("orders", 2, None);
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(2));
    o.bridges.insert("orders".into(), Some(2));
    let report = |v: &str| WorkerReport {
        version: v.into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(2),
            error: None,
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    o.pods = vec![pod("a", report("v2"))];
    let first = bridge_status(&b, true, Some(&o), &t(10)).unwrap();
    assert_eq!(cond(&first.conditions, "Ready").status, "True");
    b.status = Some(first.clone());

    // Another bridge was added: the pool renders v3, this bridge is unchanged.
    o.desired_version = "v3".into();
    o.pods = vec![pod("a", report("v3"))];
    let again = bridge_status(&b, true, Some(&o), &t(20)).unwrap();
    assert_eq!(
        again, first,
        "no status write for a bridge that did not change"
    );
    assert!(cond(&again.conditions, "Accepted").message.contains("v2"));

    // Its own edit is rendered into v4: now the status says so.
    b.metadata.generation = Some(3);
    o.desired_version = "v4".into();
    o.seen.insert((Kind::Bridge, "orders".into()), Some(3));
    o.bridges.insert("orders".into(), Some(3));
    let edited = bridge_status(&b, true, Some(&o), &t(30)).unwrap();
    assert_eq!(edited.config_version.as_deref(), Some("v4"));
    assert!(cond(&edited.conditions, "Accepted").message.contains("v4"));
}

fn postgres_pool(replicas: i32) -> WorkerPool {
    crate::builders::test_support::pool(
        "orders",
        serde_json::from_value(serde_json::json!({
            "replicas": replicas,
            "storage": {"type": "postgres", "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}}},
        }))
        .unwrap(),
    )
}

fn store(healthy: bool) -> Option<causeway_crds::config::StoreReport> {
    Some(causeway_crds::config::StoreReport::new(
        "postgres",
        "db.shop.svc:5432/causeway",
        healthy,
    ))
}

// Issue 14: until a pool's database is reachable, its Ready condition says why, although
// its workers are not ready (they fail /readyz meanwhile), and it says so once per host.
#[test]
fn a_pool_whose_workers_cannot_reach_their_store_is_store_unavailable() {
    let p = postgres_pool(3);
    let mut o = obs("orders");
    o.store = Some(StorageType::Postgres);
    let unready = |name: &str, healthy: bool| PodObservation {
        ready: false,
        ..pod(
            name,
            WorkerReport {
                version: "v2".into(),
                store: store(healthy),
                ..WorkerReport::default()
            },
        )
    };
    o.pods = vec![
        unready("a", false),
        unready("b", false),
        unready("c", false),
    ];
    let s = pool_status(&p, Some(&o), None, &t(1));
    let r = cond(&s.conditions, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "StoreUnavailable")
    );
    assert_eq!(
        r.message,
        "3/3 workers cannot use their store: postgres at db.shop.svc:5432/causeway: unreachable, the worker cannot write"
    );
    assert_eq!((s.replicas, s.ready_replicas), (3, 0));
    assert_eq!(s.store, Some(StorageType::Postgres));

    // One replica still sees the database trouble: still unavailable, and it says how many.
    o.pods = vec![
        pod(
            "a",
            WorkerReport {
                version: "v2".into(),
                store: store(true),
                ..WorkerReport::default()
            },
        ),
        pod(
            "b",
            WorkerReport {
                version: "v2".into(),
                store: store(true),
                ..WorkerReport::default()
            },
        ),
        unready("c", false),
    ];
    let r = pool_status(&p, Some(&o), None, &t(2)).conditions;
    assert_eq!(cond(&r, "Ready").reason, "StoreUnavailable");
    assert!(cond(&r, "Ready").message.starts_with("1/3 workers"));

    // The database is back: every worker is ready on the desired version.
    o.pods[2] = pod(
        "c",
        WorkerReport {
            version: "v2".into(),
            store: store(true),
            ..WorkerReport::default()
        },
    );
    let s = pool_status(&p, Some(&o), None, &t(3));
    let r = cond(&s.conditions, "Ready");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Ready"));

    // Not ready workers that say nothing about their store (older workers, or not started)
    // are only counted.
    o.pods = vec![PodObservation {
        ready: false,
        report: Some(Err("connection refused".into())),
        ..pod("a", WorkerReport::default())
    }];
    let r = pool_status(&p, Some(&o), None, &t(4)).conditions;
    assert_eq!(cond(&r, "Ready").reason, "Pending");
    assert_eq!(cond(&r, "Ready").message, "0/3 workers ready");
}

// Issue 14: status says which store a pool uses (the `Store` printer column).
#[test]
fn pool_status_says_which_store_the_pool_uses() {
    let embedded = crate::builders::test_support::pool(
        "default",
        crate::builders::test_support::default_spec(),
    );
    let mut o = obs("default");
    o.store = Some(StorageType::Embedded);
    let s = pool_status(&embedded, Some(&o), None, &t(1));
    assert_eq!(s.store, Some(StorageType::Embedded));
    assert_eq!(
        serde_json::to_value(&s).unwrap()["store"],
        serde_json::json!("embedded")
    );

    // A reconcile that stopped before applying (the URL Secret is missing) keeps what the
    // pool last ran on.
    let mut p = postgres_pool(2);
    p.status = Some(s);
    let s = pool_status(
        &p,
        None,
        Some(("SecretNotFound", "Secret \"pg\" not found".into())),
        &t(2),
    );
    assert_eq!(s.store, Some(StorageType::Embedded));
}

/// Issue 18: a bridge's status tells its health, not only its config. Destinations paused
/// on any worker make `DestinationsHealthy` False with their names; the last hour is
/// summed over the pool's workers and rewritten at most once a minute, and never when
/// nothing changed.
#[test]
fn destinations_health_and_counts_in_the_bridge_status() {
    use causeway_crds::config::DestinationReport;
    let mut b: Bridge = bridge("orders", 2, None);
    b.spec.destinations.push(b.spec.destinations[0].clone());
    b.spec.destinations[1].name = "crm".into();
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(2));
    o.bridges.insert("orders".into(), Some(2));
    let report = |d: Vec<DestinationReport>| WorkerReport {
        version: "v2".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(2),
            destinations: d,
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    let dest = |name: &str, paused, pending, delivered, dead| DestinationReport {
        name: name.into(),
        paused,
        paused_reason: paused.then(|| DestinationReport::GONE.into()),
        pending,
        delivered,
        failed: dead,
        dead,
        ..DestinationReport::default()
    };
    o.pods = vec![
        pod(
            "a",
            report(vec![
                dest("d", false, 4, 10, 1),
                dest("crm", false, 0, 3, 0),
            ]),
        ),
        pod(
            "b",
            report(vec![dest("d", false, 4, 5, 0), dest("crm", false, 0, 2, 0)]),
        ),
    ];
    let first = bridge_status(&b, true, Some(&o), &t(1000)).unwrap();
    let h = cond(&first.conditions, "DestinationsHealthy");
    assert_eq!(h.status, "True");
    let d = &first.destinations[0];
    assert_eq!(
        (
            d.name.as_str(),
            d.delivered_last_hour,
            d.dead_last_hour,
            d.pending
        ),
        ("d", 15, 1, 4),
        "summed over workers; pending is the pool's queue, not a sum"
    );
    assert_eq!(first.destinations[1].delivered_last_hour, 5);
    assert_eq!(first.destinations_at, Some(t(1000)));
    b.status = Some(first.clone());

    // 30 s later, more deliveries and crm paused on one worker: paused shows at once,
    // the counts wait for the minute.
    o.pods[1] = pod(
        "b",
        report(vec![dest("d", false, 4, 9, 0), dest("crm", true, 7, 2, 0)]),
    );
    let second = bridge_status(&b, true, Some(&o), &t(1030)).unwrap();
    let h = cond(&second.conditions, "DestinationsHealthy");
    assert_eq!(
        (h.status.as_str(), h.reason.as_str()),
        ("False", "DestinationsPaused")
    );
    assert!(h.message.ends_with(": crm"), "{}", h.message);
    assert!(second.destinations[1].paused);
    assert_eq!(second.destinations[0].delivered_last_hour, 15);
    assert_eq!(second.destinations_at, Some(t(1000)));
    b.status = Some(second.clone());

    // A minute after the last take: the new counts.
    let third = bridge_status(&b, true, Some(&o), &t(1061)).unwrap();
    assert_eq!(third.destinations[0].delivered_last_hour, 19);
    assert_eq!(third.destinations[1].pending, 7);
    assert_eq!(third.destinations_at, Some(t(1061)));
    b.status = Some(third.clone());

    // Nothing changed for ten minutes: the same status, no write.
    let idle = bridge_status(&b, true, Some(&o), &t(1661)).unwrap();
    assert_eq!(idle, third);
}

/// Issue 18: circuit breakers. A destination whose breaker is open (on any worker: the
/// pool shares one breaker) makes `DestinationsHealthy` False, `CircuitOpen`, naming it; a
/// disabled one is paused with the reason `Disabled`, told apart from a 410 in the
/// condition's reason and message; the gravest reason wins when both happen.
#[test]
fn open_and_disabled_breakers_in_the_bridge_status() {
    use causeway_crds::config::DestinationReport;
    let mut b: Bridge = bridge("orders", 2, None);
    for name in ["crm", "erp"] {
        let mut d = b.spec.destinations[0].clone();
        d.name = name.into();
        b.spec.destinations.push(d);
    }
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(2));
    o.bridges.insert("orders".into(), Some(2));
    let report = |d: Vec<DestinationReport>| WorkerReport {
        version: "v2".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(2),
            destinations: d,
            ..BridgeReport::default()
        }],
        ..WorkerReport::default()
    };
    let d = |name: &str| DestinationReport {
        name: name.into(),
        ..DestinationReport::default()
    };
    let open = |name: &str, state: &str| DestinationReport {
        breaker: Some(state.into()),
        ..d(name)
    };
    let paused = |name: &str, why: &str| DestinationReport {
        paused: true,
        paused_reason: Some(why.into()),
        ..d(name)
    };
    // One worker saw the probe go out (half-open), the other still has it open.
    o.pods = vec![
        pod(
            "a",
            report(vec![
                d("d"),
                open("crm", DestinationReport::HALF_OPEN),
                d("erp"),
            ]),
        ),
        pod(
            "b",
            report(vec![d("d"), open("crm", DestinationReport::OPEN), d("erp")]),
        ),
    ];
    let s = bridge_status(&b, true, Some(&o), &t(1000)).unwrap();
    let h = cond(&s.conditions, "DestinationsHealthy");
    assert_eq!(
        (h.status.as_str(), h.reason.as_str()),
        ("False", "CircuitOpen")
    );
    assert_eq!(
        h.message,
        "circuit breaker open, jobs wait for its probe: crm"
    );
    assert_eq!(s.destinations[1].breaker.as_deref(), Some("open"));
    assert!(!s.destinations[1].paused);

    // crm disabled, erp gone (410): both named, each with its cause; disabled is the reason.
    o.pods = vec![pod(
        "a",
        report(vec![
            d("d"),
            paused("crm", DestinationReport::DISABLED),
            paused("erp", DestinationReport::GONE),
        ]),
    )];
    let s = bridge_status(&b, true, Some(&o), &t(1010)).unwrap();
    let h = cond(&s.conditions, "DestinationsHealthy");
    assert_eq!(
        (h.status.as_str(), h.reason.as_str()),
        ("False", "DestinationsDisabled")
    );
    assert!(h.message.contains("paused by 410 Gone"), "{}", h.message);
    assert!(h.message.contains(": erp"), "{}", h.message);
    assert!(
        h.message.contains("disabled by the circuit breaker after failing for its disableAfter, jobs held until resumed (kubectl causeway destinations resume): crm"),
        "{}",
        h.message
    );
    assert_eq!(s.destinations[1].paused_reason.as_deref(), Some("Disabled"));
    assert_eq!(s.destinations[2].paused_reason.as_deref(), Some("Gone"));

    // Resumed and closed: healthy again.
    o.pods = vec![pod("a", report(vec![d("d"), d("crm"), d("erp")]))];
    let s = bridge_status(&b, true, Some(&o), &t(1020)).unwrap();
    let h = cond(&s.conditions, "DestinationsHealthy");
    assert_eq!((h.status.as_str(), h.reason.as_str()), ("True", "Ready"));
    assert!(
        s.destinations
            .iter()
            .all(|d| d.breaker.is_none() && d.paused_reason.is_none())
    );
}

/// Issue 18: a Bridge whose step plugin (or `http://<plugin>.internal` destination) failed
/// to load on a worker is not Ready: `PluginNotReady`, naming the plugin and why.
#[test]
fn a_bridge_whose_plugin_is_not_loaded_is_plugin_not_ready() {
    use causeway_crds::config::PluginReport;
    let mut b = bridge("orders", 2, None);
    b.spec.steps = serde_json::from_value(serde_json::json!([{"plugin": "enrich"}])).unwrap();
    let mut o = obs("default");
    o.seen.insert((Kind::Bridge, "orders".into()), Some(2));
    o.bridges.insert("orders".into(), Some(2));
    let report = |ready: bool| WorkerReport {
        version: "v2".into(),
        bridges: vec![BridgeReport {
            namespace: "shop".into(),
            name: "orders".into(),
            generation: Some(2),
            ..BridgeReport::default()
        }],
        plugins: vec![PluginReport {
            namespace: "shop".into(),
            name: "enrich".into(),
            ready,
            error: (!ready).then(|| "digest mismatch: expected sha256:aa, got sha256:bb".into()),
            ..PluginReport::default()
        }],
        ..WorkerReport::default()
    };
    o.pods = vec![pod("a", report(false))];
    let s = bridge_status(&b, true, Some(&o), &t(10)).unwrap();
    let r = cond(&s.conditions, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "PluginNotReady")
    );
    assert!(
        r.message
            .contains("plugin enrich is not ready: digest mismatch"),
        "{}",
        r.message
    );
    o.pods = vec![pod("a", report(true))];
    let s = bridge_status(&b, true, Some(&o), &t(20)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").status, "True");

    // The same for a destination that is a plugin.
    let mut b = bridge("orders", 2, None);
    b.spec.destinations[0].url = "http://enrich.internal/orders".into();
    o.pods = vec![pod("a", report(false))];
    let s = bridge_status(&b, true, Some(&o), &t(30)).unwrap();
    assert_eq!(cond(&s.conditions, "Ready").reason, "PluginNotReady");
}
