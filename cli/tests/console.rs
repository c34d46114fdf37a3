//! The console in a real headless Chromium (issue 16), driven over WebDriver
//! (Debian's chromedriver, `fantoccini`) against a real `causeway up`: the bridge, an
//! event appearing without a reload, its attempts, a replay, suspend and resume; no page
//! shows a secret of the manifests; axe-core finds no serious or critical violation; the
//! events page fits a phone-width window. Screenshots of each page go to
//! `$CARGO_TARGET_TMPDIR/console-screenshots/` (the test prints the path).
//!
//! `scripts/chromium.sh` installs chromium and chromium-driver when they are missing and
//! axe-core from npm into `~/.cache/causeway/axe` (nothing third-party in the repository).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt as _;
use serde_json::{Value, json};

/// The outbound signing secret (Standard Webhooks) and what it decodes to.
const SIGNING: &str = "whsec_Y29uc29sZS1zaWduaW5nLWtleS0wMTIz";
const SIGNING_DECODED: &str = "console-signing-key-0123";
/// A secret the destination gets in a header (through the bridge's env).
const HEADER_SECRET: &str = "hdr-secret-console-4567";
/// How long a page may take to show what the test waits for (a bound, not a measure).
const WAIT: Duration = Duration::from_secs(30);

fn yaml(sink: &Sink) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: keys}}
stringData: {{outbound: "{SIGNING}", token: "{HEADER_SECRET}"}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: orders}}
spec:
  env:
  - name: TOKEN
    valueFrom: {{secretKeyRef: {{name: keys, key: token}}}}
  destinations:
  - name: echo
    url: "{echo}"
    headers: {{Authorization: "Bearer $env.TOKEN", X-Api-Token: "$env.TOKEN"}}
    signing: {{standardWebhooks: {{secretRef: {{name: keys, key: outbound}}}}}}
---
apiVersion: causeway.dev/v1alpha1
kind: Bridge
metadata: {{name: stock}}
spec:
  destinations:
  - name: inbox
    url: http://inbox.internal/stock
---
apiVersion: causeway.dev/v1alpha1
kind: Plugin
metadata: {{name: inbox}}
spec:
  source: {{file: "{inbox}"}}
  route: /inbox
"#,
        echo = sink.url("/echo/orders"),
        inbox = inbox_wasm().display()
    )
}

/// The quickstart's public `inbox` plugin (built by `make plugins`).
fn inbox_wasm() -> PathBuf {
    let wasm =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/dist/inbox.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make plugins` first",
        wasm.display()
    );
    wasm
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/chromium.sh")
}

/// `scripts/chromium.sh <cmd>`'s stdout lines.
fn chromium_sh(cmd: &str) -> Vec<PathBuf> {
    let out = Command::new(script())
        .arg(cmd)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/chromium.sh");
    assert!(out.status.success(), "scripts/chromium.sh {cmd} failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// chromedriver on a loopback port, stopped by its PID.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(bin: &Path, log: &Path) -> Driver {
        let port = free_port();
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chromedriver");
        let d = Driver { child, port };
        let deadline = Instant::now() + WAIT;
        // chromedriver keeps connections open, so wait for its port to accept.
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser {
    c: Client,
    shots: PathBuf,
    axe: String,
    admin: String,
}

impl Browser {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.admin)).await.unwrap();
    }

    async fn source(&self) -> String {
        self.c.source().await.unwrap()
    }

    /// Waits for an element (bounded).
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
    }

    async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Reloads until `css` matches at least `n` elements (bounded): for pages that are
    /// not live (one event).
    async fn reload_until(&self, css: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.count(css).await >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} of {css}:\n{}",
                self.source().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.c.refresh().await.unwrap();
        }
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// Every check a page gets: a screenshot, no secret in its DOM, no serious
    /// accessibility violation.
    async fn check(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        let dom = self.source().await;
        for secret in [SIGNING, SIGNING_DECODED, HEADER_SECRET] {
            assert!(!dom.contains(secret), "{name} shows a secret:\n{dom}");
        }
        self.c.execute(&self.axe, vec![]).await.unwrap();
        let found = self
            .c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] })
                  .then(r => done(r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                 nodes: v.nodes.map(n => n.target.join(' ')) }))))
                  .catch(e => done({ error: String(e) }));"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(found, json!([]), "axe-core on {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser() {
    let bins = chromium_sh("install");
    let (chromium, chromedriver) = (&bins[0], &bins[1]);
    let axe = std::fs::read_to_string(&chromium_sh("axe")[0]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &yaml(&sink));
    let w = Worker::start(dir.path(), &m, &[]);
    let summary = w.log_text();
    assert!(
        summary.contains(&format!("console http://{}/", w.admin)),
        "causeway up names the console: {summary}"
    );

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    println!("console screenshots: {}", shots.display());

    let (driver, c) = session(chromium, chromedriver, dir.path()).await;
    let b = Browser {
        c: c.clone(),
        shots: shots.clone(),
        axe,
        admin: format!("http://{}", w.admin),
    };
    let outcome = std::panic::AssertUnwindSafe(scenario(&b, &w, &sink))
        .catch_unwind()
        .await;
    // Close the browser whatever happened, then report.
    let _ = c.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        eprintln!("worker log:\n{}", w.log_text());
        std::panic::resume_unwind(panic);
    }
}

/// chromedriver and a headless Chromium session on it.
async fn session(chromium: &Path, chromedriver: &Path, dir: &Path) -> (Driver, Client) {
    let driver = Driver::start(chromedriver, &dir.join("chromedriver.log"));
    let caps = json!({
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", dir.join("chromium").display()),
            ],
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url(""))
        .await
        .expect("a Chromium session");
    (driver, c)
}

/// The bench note of issue 16: First Contentful Paint of the events page with 10,000
/// events in the store, from the Performance API of the same Chromium. Prints the figure
/// (docs/console.md keeps it); asserts nothing about time. Run with
/// `cargo test --release -p causeway-runtime --test console -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run by hand"]
async fn first_contentful_paint_of_the_events_page_with_10000_events() {
    use futures::StreamExt as _;
    let bins = chromium_sh("install");
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::ok().await;
    let m = manifests(dir.path(), &yaml(&sink));
    let w = Worker::start(dir.path(), &m, &[]);
    let http = client();
    let url = w.url("/hooks/default/orders");
    let accepted = futures::stream::iter(0..10_000)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                post(&http, &url, &format!(r#"{{"order":{i}}}"#), &[])
                    .await
                    .0
            }
        })
        .buffer_unordered(32)
        .filter(|code| std::future::ready(*code == 202))
        .count()
        .await;
    assert_eq!(accepted, 10_000);
    assert_eq!(stored_events(&http, &w).await, 10_000);
    let (driver, c) = session(&bins[0], &bins[1], dir.path()).await;
    let mut fcp = vec![];
    for _ in 0..5 {
        c.goto(&w.admin_url("/events")).await.unwrap();
        c.wait()
            .for_element(Locator::Css("#events tbody tr"))
            .await
            .unwrap();
        // The paint entry is queued after the paint: observe it, buffered.
        let v = c
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                new PerformanceObserver(list => {
                  const e = list.getEntriesByName('first-contentful-paint')[0];
                  if (e) done(e.startTime);
                }).observe({ type: 'paint', buffered: true });"#,
                vec![],
            )
            .await
            .unwrap();
        fcp.push(v.as_f64().unwrap());
    }
    let _ = c.close().await;
    drop(driver);
    fcp.sort_by(f64::total_cmp);
    println!(
        "FCP of /events with 10,000 events: median {:.0} ms (runs: {fcp:?})",
        fcp[fcp.len() / 2]
    );
}

async fn scenario(b: &Browser, w: &Worker, sink: &Sink) {
    let http = client();

    // Bridges: the bridge, its URL and its destination.
    b.go("/").await;
    b.wait_for("#bridge-default-orders").await;
    let page = b.source().await;
    assert!(
        page.contains(&format!("http://{}/hooks/default/orders", w.listen)),
        "{page}"
    );
    assert!(page.contains("echo") && page.contains("Ready"), "{page}");
    b.check("bridges").await;

    // Events: an event sent now appears without a reload.
    b.go("/events").await;
    b.wait_for("#events").await;
    b.check("events-empty").await;
    b.c.execute("window.loadedOnce = 'yes';", vec![])
        .await
        .unwrap();
    let (code, body) = post(
        &http,
        &w.url("/hooks/default/orders"),
        r#"{"order":7}"#,
        &[("webhook-id", "msg_console_7")],
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().expect("an event id").to_string();
    b.wait_for(&format!("#ev-{id}")).await;
    let marker =
        b.c.execute("return window.loadedOnce;", vec![])
            .await
            .unwrap();
    assert_eq!(marker, json!("yes"), "the row came without a reload");
    b.check("events").await;

    // Search by webhook-id through the form: another id finds nothing, the event's finds it.
    for (wanted, found) in [("msg_other", false), ("msg_console_7", true)] {
        let field = b.wait_for("#f-webhook-id").await;
        field.clear().await.unwrap();
        field.send_keys(wanted).await.unwrap();
        b.click("form.filters button[type=submit]").await;
        // The click starts a navigation: wait for the page of this search.
        let deadline = std::time::Instant::now() + WAIT;
        while !b
            .c
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&format!("webhookId={wanted}"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no search for {wanted}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        b.wait_for("#events").await;
        let page = b.source().await;
        assert_eq!(
            page.contains(&format!("id=\"ev-{id}\"")),
            found,
            "{wanted}: {page}"
        );
        assert!(
            page.contains(&format!("value=\"{wanted}\"")),
            "the field keeps the search: {page}"
        );
    }
    b.check("events-search").await;

    // One event: its attempts.
    b.click(&format!("#ev-{id} a")).await;
    b.wait_for("h1").await;
    assert!(b.source().await.contains(&format!("Event {id}")));
    assert_eq!(sink.wait_for("/echo/orders", 1, WAIT).await, 1);
    b.reload_until("table.attempts tbody tr", 1).await;
    let page = b.source().await;
    assert!(
        page.contains("200") && page.contains("\"order\": 7"),
        "{page}"
    );
    b.check("event").await;

    // Replay it: confirmed, then a second attempt.
    b.click("a[href$='/replay']").await;
    b.wait_for("form button[type=submit]").await;
    b.check("confirm-replay").await;
    b.click("form button[type=submit]").await;
    b.wait_for(".notice").await;
    assert!(
        b.source().await.contains("Replayed: 1"),
        "{}",
        b.source().await
    );
    b.reload_until("table.attempts tbody tr", 2).await;
    assert_eq!(sink.wait_for("/echo/orders", 2, WAIT).await, 2);
    b.check("event-replayed").await;

    // Suspend and resume the bridge, each confirmed.
    b.go("/").await;
    b.click("a[href='/bridges/default/orders/suspend']").await;
    b.check("confirm-suspend").await;
    b.click("form button[type=submit]").await;
    b.wait_for("a[href='/bridges/default/orders/resume']").await;
    let bridges = get_json(&http, &w.admin_url("/api/v1/bridges")).await;
    assert_eq!(bridges["bridges"][0]["suspended"], json!(true), "{bridges}");
    b.check("bridges-suspended").await;
    b.click("a[href='/bridges/default/orders/resume']").await;
    b.click("form button[type=submit]").await;
    b.wait_for("a[href='/bridges/default/orders/suspend']")
        .await;
    let bridges = get_json(&http, &w.admin_url("/api/v1/bridges")).await;
    assert_eq!(
        bridges["bridges"][0]["suspended"],
        json!(false),
        "{bridges}"
    );

    // The Bridges page: the last hour, its sparkline, the actions just done, and the
    // command that deletes a bridge.
    b.go("/").await;
    b.wait_for("#bridge-default-orders").await;
    let page = b.source().await;
    assert!(
        page.contains("1 received") && page.contains("1 delivered"),
        "{page}"
    );
    assert!(
        b.count("section[aria-labelledby=bridge-default-orders] svg.spark rect:not(.base)")
            .await
            >= 1,
        "{page}"
    );
    assert!(
        page.contains("kubectl delete bridge orders -n default"),
        "{page}"
    );
    for action in ["<td>replay</td>", "<td>suspend</td>", "<td>resume</td>"] {
        assert!(page.contains(action), "{action}: {page}");
    }
    b.check("bridges-counts").await;

    // The event page: filter and steps results, and the replay in its action log.
    b.go(&format!("/events/{id}")).await;
    b.wait_for("#filter-result").await;
    let page = b.source().await;
    assert!(
        page.contains("Actions on this event") && page.contains("<td>replay</td>"),
        "{page}"
    );

    // Plugins: a call through the bridge `stock`, then its digest, pool and calls.
    let (code, body) = post(&http, &w.url("/hooks/default/stock"), r#"{"sku":1}"#, &[]).await;
    assert_eq!(code, 202, "{body}");
    let stock = body["id"].as_str().expect("an event id").to_string();
    let deadline = Instant::now() + WAIT;
    loop {
        let e = get_json(&http, &w.admin_url(&format!("/api/v1/events/{stock}"))).await;
        if e["status"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered to inbox: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.go("/plugins").await;
    b.wait_for("h1").await;
    let page = b.source().await;
    assert!(
        page.contains("default/inbox") && page.contains("sha256:"),
        "{page}"
    );
    assert!(page.contains("<td class=\"calls\">1</td>"), "{page}");
    assert!(page.contains("<td class=\"errors\">0</td>"), "{page}");
    assert!(page.contains("<td>≤ "), "a call time: {page}");
    b.check("plugins").await;

    // A phone-width window: nothing wider than the screen but the tables' own scroll.
    b.c.set_window_size(390, 844).await.unwrap();
    for (path, name) in [
        ("/events", "events-phone"),
        (&*format!("/events/{id}"), "event-phone"),
        ("/", "bridges-phone"),
    ] {
        b.go(path).await;
        b.wait_for("h1").await;
        let overflow = b
            .c
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name} overflows by {overflow}px"
        );
        b.check(name).await;
    }
}
