//! Issue 12 (security hardening), through the real worker on loopback. Nothing here sends a
//! packet off this machine: refused addresses are loopback addresses the worker was told to
//! deny, and the classification of real link-local and metadata addresses is unit-tested
//! in `runtime/src/netguard.rs` and `runtime/plugins/src/outbound.rs`.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(20);

/// Item 4: destinations pass the network guard after DNS resolution. The worker denies
/// 127.0.0.1 and ::1; `localhost` resolves to them (through /etc/hosts, never the network),
/// so both the name and the literal are refused with a clear attempt error and the sink
/// there sees nothing, while a sink on 127.0.0.3 gets its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_are_refused_after_resolution_when_their_address_is_denied() {
    let dir = tempfile::tempdir().unwrap();
    let denied = Sink::ok().await;
    let allowed = Sink::start_on("127.0.0.3", |_, _| (200, vec![])).await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: guarded}}
spec:
  destinations:
  - name: by-name
    url: "http://localhost:{port}/by-name"
    retries: 0
  - name: literal
    url: "{literal}"
    retries: 0
  - name: fine
    url: "{fine}"
    retries: 0
"#,
        port = denied.addr.port(),
        literal = denied.url("/literal"),
        fine = allowed.url("/fine"),
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(
        dir.path(),
        &m,
        &["--deny-destination-cidr", "127.0.0.1/32,::1/128"],
    );
    let c = client();
    let (s, v) = post(&c, &w.url("/hooks/default/guarded"), r#"{"a":1}"#, &[]).await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(allowed.wait_for("/fine", 1, WAIT).await, 1);
    let ev = wait_status(&c, &w, &id, "dead", WAIT).await;
    assert_eq!(ev["status"], "dead", "{ev:#}");
    for d in ev["deliveries"].as_array().unwrap() {
        let name = d["destination"].as_str().unwrap();
        let err = d["attempts"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match name {
            "fine" => assert_eq!(d["status"], "delivered"),
            _ => {
                assert_eq!(d["status"], "dead", "{name}: {d:#}");
                assert!(
                    err.contains("destination refused") && err.contains("127.0.0.1"),
                    "{name}: {err}"
                );
            }
        }
    }
    assert_eq!(
        denied.total.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a refused destination was reached"
    );
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("causeway_destination_refused_total 2"),
        "{metrics}"
    );
}

/// Item 22: one job record that cannot be decoded is quarantined and counted, and every
/// other delivery goes on (before, the scheduler failed on it forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_job_is_quarantined_and_the_rest_is_delivered() {
    use redb::{ReadableTable, TableDefinition};
    const JOBS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("jobs");
    const DUE: TableDefinition<(u64, u128, u32), ()> = TableDefinition::new("due");

    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: later}}
spec:
  destinations:
  - {{name: d, url: "{later}", delay: 1h}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: now}}
spec:
  destinations:
  - {{name: d, url: "{now}"}}
"#,
        later = sink.url("/later"),
        now = sink.url("/now"),
    );
    let m = manifests(dir.path(), &yaml);
    let mut w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let (s, _) = post(&c, &w.url("/hooks/default/later"), r#"{"a":1}"#, &[]).await;
    assert_eq!(s, 202);
    w.kill9();

    // Corrupt the queued job's record and make it due at once.
    {
        let db = redb::Database::open(w.data_dir.join("store/events.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut due = tx.open_table(DUE).unwrap();
            let rows: Vec<(u64, u128, u32)> =
                due.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
            assert_eq!(rows.len(), 1, "one queued job");
            let (at, event, index) = rows[0];
            due.remove((at, event, index)).unwrap();
            due.insert((0, event, index), ()).unwrap();
            let mut jobs = tx.open_table(JOBS).unwrap();
            jobs.insert((event, index), &b"\xff\x00 not a job record"[..])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    w.spawn();
    let (s, v) = post(&c, &w.url("/hooks/default/now"), r#"{"b":2}"#, &[]).await;
    assert_eq!(s, 202);
    let id = v["id"].as_str().unwrap().to_string();
    let ev = wait_status(&c, &w, &id, "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}\n{}", w.log_text());
    assert_eq!(sink.count("/now"), 1);
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("causeway_jobs_quarantined_total 1"),
        "{metrics}"
    );
}

/// Item 21: a new data directory is private to the worker's user, and so is the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_dir_and_the_store_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(
        dir.path(),
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: b}\nspec:\n  destinations:\n  - {name: d, url: \"http://127.0.0.1:9/x\"}\n",
    );
    let w = Worker::start(dir.path(), &m, &[]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&w.data_dir), 0o700);
    assert_eq!(mode(&w.data_dir.join("store")), 0o700);
    assert_eq!(mode(&w.data_dir.join("plugins")), 0o700);
    assert_eq!(mode(&w.data_dir.join("store/events.redb")), 0o600);
}

const ONE_BRIDGE: &str = "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: b}\nspec:\n  destinations:\n  - {name: d, url: \"http://127.0.0.1:9/x\"}\n";

/// Item 13: an empty admin token refuses every admin call (it used to disable auth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_admin_token_refuses_admin_calls() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), ONE_BRIDGE);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(["render", "-f"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    cfg["adminToken"] = serde_json::json!("");
    let file = dir.path().join("config.json");
    std::fs::write(&file, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let w = Worker::start_worker(dir.path(), &file, &[]);
    let c = client();
    for path in ["/api/v1/events", "/api/v1/config"] {
        let resp = c.get(w.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        let resp = c
            .get(w.admin_url(path))
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path} with an empty bearer");
    }
    assert_eq!(
        c.get(w.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Item 13: `causeway up` on a non-loopback admin address makes up a token, prints it
/// once, and requires it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_on_a_public_admin_address_requires_a_generated_token() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifests(dir.path(), ONE_BRIDGE);
    // Bound on every interface; the test only ever connects through loopback.
    let admin: std::net::SocketAddr = format!("0.0.0.0:{}", free_port()).parse().unwrap();
    let cmd = vec!["up".to_string(), "-f".to_string(), m.display().to_string()];
    let w = Worker::start_admin_at(dir.path(), &m, cmd, admin, &[]);
    let local = format!("http://127.0.0.1:{}", admin.port());
    let c = client();
    assert_eq!(
        c.get(format!("{local}/api/v1/events"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let log = w.log_text();
    let token = log
        .split("admin calls need the token ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token printed:\n{log}"))
        .to_string();
    assert_eq!(token.len(), 48);
    let resp = c
        .get(format!("{local}/api/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        log.matches(&token).count(),
        1,
        "the token is printed once and never logged"
    );

    // On loopback (the default) nothing changes: no token, no line.
    let dir2 = tempfile::tempdir().unwrap();
    let w2 = Worker::start(dir2.path(), &manifests(dir2.path(), ONE_BRIDGE), &[]);
    assert_eq!(
        c.get(w2.admin_url("/api/v1/events"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(!w2.log_text().contains("admin calls need the token"));
}

fn dist(name: &str) -> String {
    let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/dist")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run `make plugins` first",
        p.display()
    );
    p.display().to_string()
}

/// Item 14: a public plugin route that fails answers with the kind of failure only, never
/// the guest's stderr or the host's details.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_routes_answer_failures_with_the_kind_only() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: trap}}\nspec:\n  source: {{file: {}}}\n  route: /trap\n",
        dist("fx-trap")
    );
    let m = manifests(dir.path(), &yaml);
    let w = Worker::start(dir.path(), &m, &[]);
    let c = client();
    let resp = c
        .post(w.url("/trap/secret-path"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["causeway-error"], "trap");
    let body = resp.text().await.unwrap();
    assert_eq!(body, r#"{"error":"trap"}"#);
    assert!(
        w.log_text().contains("deliberate panic"),
        "the details stay in the log"
    );
}

/// Item 16: resuming a destination nobody configured is a 404 and creates no metric series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_an_unknown_destination_is_refused_and_makes_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::start(dir.path(), &manifests(dir.path(), ONE_BRIDGE), &[]);
    let c = client();
    for path in [
        "/api/v1/bridges/default/b/destinations/made-up-name-1/resume",
        "/api/v1/bridges/default/nope/destinations/made-up-name-2/resume",
    ] {
        let resp = c.post(w.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = c
        .post(w.admin_url("/api/v1/bridges/default/b/destinations/d/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("made-up-name"), "{metrics}");
}

/// Sends `request` from the loopback address `from` to `to` and reads until the server
/// closes (bounded: a server that never closes fails the test, it does not hang it).
async fn raw_exchange(
    from: &str,
    to: std::net::SocketAddr,
    request: &[u8],
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(to).await.map_err(|e| e.to_string())?;
    s.write_all(request).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await {
        Err(_) => Err("the server kept the connection open".into()),
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(out),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

/// Item 15: one peer cannot take every ingress connection: past its share its new
/// connections are closed at once, while another peer is still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_cannot_take_every_ingress_connection() {
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), ONE_BRIDGE),
        &["--max-connections", "8", "--max-connections-per-peer", "2"],
    );
    // Two idle connections from 127.0.0.1 hold its share.
    let _a = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    let _b = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    let req = b"GET /nothing-here HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let third = raw_exchange("127.0.0.1", w.listen, req).await.unwrap();
    assert!(
        third.is_empty(),
        "a third connection from the same peer was served: {}",
        String::from_utf8_lossy(&third)
    );
    let other = raw_exchange("127.0.0.2", w.listen, req).await.unwrap();
    assert!(
        other.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&other)
    );
    let c = client();
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"causeway_events_rejected_total{bridge="",reason="peer_connections"} 1"#),
        "{metrics}"
    );
}

/// Item 8: the admin port closes a connection whose headers never finish, as ingress does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_times_out_half_sent_headers() {
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), ONE_BRIDGE),
        &["--header-timeout", "1s"],
    );
    let got = raw_exchange(
        "127.0.0.1",
        w.admin,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n",
    )
    .await;
    let got = got.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // And it still answers whole requests.
    let ok = raw_exchange(
        "127.0.0.1",
        w.admin,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(
        ok.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
}

/// A tmpfs of `mib` MiB mounted at `dir` for one test (needs root, as CI runs); unmounted
/// on drop. None (the test says SKIP) where mounting is not allowed.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, mib: u32) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }

    /// Fills the disk, leaving about `leave` bytes free (0: until ENOSPC).
    fn fill(&self, leave: u64) -> std::path::PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5au8; 64 << 10];
        loop {
            let st = nix_free(&self.0);
            if leave > 0 && st <= leave + chunk.len() as u64 {
                break;
            }
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = f.sync_all();
        path
    }
}

fn nix_free(p: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

async fn post_until(c: &reqwest::Client, w: &Worker, bridge: &str, want: u16) -> u16 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (s, _) = post(
            c,
            &w.url(&format!("/hooks/default/{bridge}")),
            r#"{"x":1}"#,
            &[],
        )
        .await;
        if s == want || std::time::Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) for `text` in the worker's log.
async fn wait_log(w: &Worker, text: &str) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if w.log_text().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn readyz(c: &reqwest::Client, w: &Worker) -> (u16, String) {
    let r = c.get(w.admin_url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Item 5: below the free-space watermark new events get 507 and the worker is not ready;
/// with space back it accepts again, by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_watermark_events_are_refused_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("data"), 32) else {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root)");
        return;
    };
    let m = manifests(dir.path(), ONE_BRIDGE);
    let w = Worker::start(dir.path(), &m, &["--min-free-disk", "8Mi"]);
    let c = client();
    let (s, first) = post(&c, &w.url("/hooks/default/b"), r#"{"n":1}"#, &[]).await;
    assert_eq!(s, 202);
    let filler = disk.fill(4 << 20);
    assert_eq!(post_until(&c, &w, "b", 507).await, 507);
    let (code, text) = readyz(&c, &w).await;
    assert_eq!(code, 503);
    assert!(text.contains("almost full"), "{text}");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(post_until(&c, &w, "b", 202).await, 202);
    assert_eq!(readyz(&c, &w).await.0, 200);
    let ev = get_json(
        &c,
        &w.admin_url(&format!("/api/v1/events/{}", first["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(ev["bridge"], "default/b", "the first event is still there");
}

/// Item 5: a full disk (ENOSPC inside the store) refuses events with 503 and marks the
/// store unhealthy; once space is back the store reopens by itself (redb refuses every
/// write after an I/O error until it is reopened) and events are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("data"), 32) else {
        eprintln!("SKIP: cannot mount a tmpfs here (needs root)");
        return;
    };
    let m = manifests(dir.path(), ONE_BRIDGE);
    let w = Worker::start(dir.path(), &m, &["--min-free-disk", "0"]);
    let c = client();
    let (s, first) = post(&c, &w.url("/hooks/default/b"), r#"{"n":1}"#, &[]).await;
    assert_eq!(s, 202);
    let filler = disk.fill(0);
    // Bigger bodies than the space left: the store's write fails.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(256 << 10));
    let mut refused = false;
    for _ in 0..50 {
        let (s, _) = post(&c, &w.url("/hooks/default/b"), &big, &[]).await;
        if s == 503 {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the store never failed a write on a full disk:\n{}",
        w.log_text()
    );
    // Readiness follows the store: not ready from the I/O error until a reopen proves a
    // commit works again (small commits may already fit in the file's free pages, so
    // when exactly it turns back is not asserted here; the watermark test checks /readyz).
    assert!(
        wait_log(&w, "refusing writes until the database reopens").await,
        "{}",
        w.log_text()
    );
    std::fs::remove_file(filler).unwrap();
    assert_eq!(post_until(&c, &w, "b", 202).await, 202, "{}", w.log_text());
    assert_eq!(readyz(&c, &w).await.0, 200);
    assert!(
        w.log_text().contains("store reopened after an I/O error"),
        "{}",
        w.log_text()
    );
    let ev = get_json(
        &c,
        &w.admin_url(&format!("/api/v1/events/{}", first["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(ev["bridge"], "default/b", "the acknowledged event survived");
}

/// Item 7: a quadratic filter over a sender-sized list ends on its budget (the event is
/// dropped with a `budget` reason, fail closed) instead of running for seconds on the
/// threads that serve connections; the worker keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quadratic_filter_ends_on_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: quadratic}}
spec:
  filter: "payload.items.exists(x, payload.items.exists(y, x == y + 1000000))"
  destinations:
  - {{name: d, url: "{}"}}
"#,
        sink.url("/d")
    );
    let w = Worker::start(dir.path(), &manifests(dir.path(), &yaml), &[]);
    let c = client();
    let items: Vec<u32> = (0..5000).collect();
    let body = serde_json::json!({ "items": items }).to_string();
    let (s, v) = post(&c, &w.url("/hooks/default/quadratic"), &body, &[]).await;
    assert_eq!(s, 202);
    let ev = get_json(
        &c,
        &w.admin_url(&format!("/api/v1/events/{}", v["id"].as_str().unwrap())),
    )
    .await;
    assert_eq!(ev["status"], "filtered", "{ev:#}");
    assert!(ev["reason"].as_str().unwrap().contains("budget"), "{ev:#}");
    // A small list is decided normally.
    let (s, v) = post(
        &c,
        &w.url("/hooks/default/quadratic"),
        r#"{"items":[1, 1000001]}"#,
        &[],
    )
    .await;
    assert_eq!(s, 202);
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    assert_eq!(
        c.get(w.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// Item 6: body bytes in flight are bounded over all connections: while one sender
/// trickles a large body, another large body is refused with 503 before it is read, and a
/// small one still fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_bytes_in_flight_are_bounded_across_connections() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().unwrap();
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), ONE_BRIDGE),
        &["--max-body-bytes-in-flight", "64Ki", "--body-timeout", "3s"],
    );
    // 60 KiB declared, half sent: its reservation holds.
    let mut slow = tokio::net::TcpStream::connect(w.listen).await.unwrap();
    let head = "POST /hooks/default/b HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 61440\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&[b' '; 30000]).await.unwrap();
    let c = client();
    // A second 40 KiB body, declared and never sent: refused before it would be read
    // (read, it would time out with 408 after the 3 s body timeout).
    let head = b"POST /hooks/default/b HTTP/1.1\r\nhost: x\r\ncontent-length: 40960\r\n\r\n";
    let deadline = std::time::Instant::now() + WAIT;
    let answer = loop {
        // The slow request may not have reached its reservation yet: retry until it has.
        let got = raw_exchange("127.0.0.1", w.listen, head).await.unwrap();
        let text = String::from_utf8_lossy(&got).to_string();
        if text.starts_with("HTTP/1.1 503") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "a second large body was read while the budget was spent: {answer}"
    );
    let (s, _) = post(&c, &w.url("/hooks/default/b"), r#"{"small":1}"#, &[]).await;
    assert_eq!(s, 202, "a small body still fits");
    drop(slow);
    let metrics = c
        .get(w.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"reason="bodies_in_flight"}"#),
        "{metrics}"
    );
}

/// Item 6: a body-signing scheme refuses a request without its signature headers before
/// reading the body: the answer is 401 at once, not a 408 after the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_are_refused_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData: {github: "gh-webhook-secret-0123"}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {name: gh}
spec:
  ingress:
    maxBodyBytes: 2000000
    auth:
      hmac: {preset: github, secretRef: {name: keys, key: github}}
  destinations:
  - {name: d, url: "http://127.0.0.1:9/x"}
"#;
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), yaml),
        &["--body-timeout", "3s"],
    );
    // A declared megabyte that never comes.
    let head = b"POST /hooks/default/gh HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n";
    let got = raw_exchange("127.0.0.1", w.listen, head).await.unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // A malformed signature is refused the same way.
    let head = b"POST /hooks/default/gh HTTP/1.1\r\nhost: x\r\nx-hub-signature-256: sha256=zz\r\ncontent-length: 1000000\r\n\r\n";
    let got = raw_exchange("127.0.0.1", w.listen, head).await.unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

fn hs256_token(key: &[u8], claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Item 23: with `dedupeJti`, a JWT is accepted once: a replay (even with a new
/// idempotency header) answers with the first event's id and stores nothing; a token
/// without `jti` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_jwt_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = "jwt-shared-secret-0123456789";
    let yaml = format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{jwt: "{key}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: api}}
spec:
  ingress:
    auth:
      jwt: {{algorithms: [HS256], secretRef: {{name: keys, key: jwt}}, dedupeJti: true}}
  destinations:
  - {{name: d, url: "http://127.0.0.1:9/x"}}
"#
    );
    let w = Worker::start(dir.path(), &manifests(dir.path(), &yaml), &[]);
    let c = client();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = hs256_token(
        key.as_bytes(),
        &serde_json::json!({"jti": "tok-1", "exp": exp}),
    );
    let auth = format!("Bearer {token}");
    let (s, first) = post(
        &c,
        &w.url("/hooks/default/api"),
        r#"{"a":1}"#,
        &[("authorization", &auth), ("webhook-id", "one")],
    )
    .await;
    assert_eq!(s, 202);
    let resp = c
        .post(w.url("/hooks/default/api"))
        .header("authorization", &auth)
        .header("webhook-id", "two")
        .body(r#"{"a":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["causeway-duplicate"], "true");
    let again: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(again["id"], first["id"], "the replay names the first event");
    assert_eq!(stored_events(&c, &w).await, 1);
    let no_jti = hs256_token(key.as_bytes(), &serde_json::json!({"exp": exp}));
    let (s, _) = post(
        &c,
        &w.url("/hooks/default/api"),
        "{}",
        &[("authorization", &format!("Bearer {no_jti}"))],
    )
    .await;
    assert_eq!(s, 401);
}

/// Issue 13 item 5: a destination on a real host whose name ends in `.internal` goes to
/// the network (here `api.corp.internal`, resolved to loopback by `--resolve`, never by
/// DNS), while `http://<plugin>.internal` still reaches the plugin in-process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_internal_host_goes_to_the_network_and_a_plugin_stays_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let port = sink.addr.port();
    let yaml = format!(
        r#"
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: inbox}}
spec:
  source: {{file: {inbox}}}
  route: /inbox
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: both}}
spec:
  destinations:
  - {{name: corp, url: "http://api.corp.internal:{port}/orders", retries: 0}}
  - {{name: plugin, url: "http://inbox.internal/orders", retries: 0}}
"#,
        inbox = dist("inbox"),
    );
    let resolve = format!("api.corp.internal:{port}:127.0.0.1");
    let w = Worker::start(
        dir.path(),
        &manifests(dir.path(), &yaml),
        &["--resolve", &resolve],
    );
    let c = client();
    let (s, v) = post(&c, &w.url("/hooks/default/both"), r#"{"order":"A-1"}"#, &[]).await;
    assert_eq!(s, 202);
    let ev = wait_status(&c, &w, v["id"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(ev["status"], "delivered", "{ev:#}");
    let got = sink.requests("/orders");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["host"], format!("api.corp.internal:{port}"));
    let inbox: serde_json::Value = c
        .get(w.url("/inbox"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox.as_array().map(Vec::len), Some(1), "{inbox}");
}
