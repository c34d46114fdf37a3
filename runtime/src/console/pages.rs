//! The console's pages (maud templates: escaped by default, checked at compile time).

use std::collections::HashMap;

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use serde_json::json;

use super::actions::Action;
use super::stats::{BridgeHour, Hour, MINUTES, PluginCalls};
use super::{EventsQuery, PAGE, csrf_token, css_url, js_url};
use crate::bridge::ActiveBridge;
use crate::shared::Shared;
use crate::store::{EventDetail, EventRecord, EventStatus, JobStatus, JobTarget};

/// Payload bytes a page shows at most.
const PAYLOAD_SHOWN: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Bridges,
    Events,
    Plugins,
    None,
}

fn layout(title: &str, nav: Nav, notice: Option<&str>, body: Markup) -> Markup {
    let current = |n: Nav| (nav == n).then_some("page");
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Causeway console" }
                link rel="stylesheet" href=(css_url());
                script src=(js_url()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Console" {
                        a.brand href="/" { "Causeway" }
                        ul {
                            li { a href="/" aria-current=[current(Nav::Bridges)] { "Bridges" } }
                            li { a href="/events" aria-current=[current(Nav::Events)] { "Events" } }
                            li { a href="/plugins" aria-current=[current(Nav::Plugins)] { "Plugins" } }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(n) = notice {
                        p.notice role="status" { (n) }
                    }
                    (body)
                }
            }
        }
    }
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn time_el(ms: u64) -> Markup {
    let t = rfc3339(ms);
    html! { time datetime=(t) { (t) } }
}

fn status_badge(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status) } }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        Nav::None,
        None,
        html! {
            p { "This worker's admin address needs its admin token (the one the API asks for)." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf_token());
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub fn error(status: StatusCode, message: &str) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        Nav::None,
        None,
        html! {
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the bridges" } }
        },
    )
}

pub fn confirm(
    question: &str,
    explanation: &str,
    button: &str,
    action: &str,
    back: &str,
) -> Markup {
    layout(
        question,
        Nav::None,
        None,
        html! {
            p { (explanation) }
            form.actions method="post" action=(action) {
                input type="hidden" name="csrf" value=(csrf_token());
                button.danger type="submit" { (button) }
                a.button.secondary href=(back) { "Cancel" }
            }
        },
    )
}

/// The auth scheme's name, never its settings.
fn auth_scheme(auth: Option<&causeway_config::AuthConfig>) -> String {
    let Some(auth) = auth else {
        return "none".into();
    };
    // The variant's name (its serialised `type`); the settings are dropped unread.
    serde_json::to_value(auth)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "configured".into())
}

pub fn bridges(
    shared: &Shared,
    depth: &[((String, String), u64)],
    hour: &Hour,
    recent: &[Action],
    notice: Option<String>,
) -> Markup {
    let none = BridgeHour::default();
    let active = shared.active();
    let paused = shared.delivery.paused();
    let breakers = shared.delivery.breakers.not_closed();
    let mut cfgs: Vec<_> = active.config.bridges.iter().collect();
    cfgs.sort_by_key(|b| b.key());
    let queued = |bridge: &str, dest: Option<&str>| -> u64 {
        depth
            .iter()
            .filter(|((b, d), _)| b == bridge && dest.is_none_or(|x| x == d))
            .map(|(_, n)| n)
            .sum()
    };
    let listen = shared.ingress_addr;
    layout(
        "Bridges",
        Nav::Bridges,
        notice.as_deref(),
        html! {
            @if cfgs.is_empty() {
                p { "No bridges are configured." }
            }
            @for cfg in &cfgs {
                @let key = cfg.key();
                @let live = active.bridges.get(&key);
                @let errors = active.errors.iter().filter(|e| e.kind == causeway_config::Kind::Bridge && e.namespace == cfg.namespace && e.name == cfg.name).collect::<Vec<_>>();
                @let suspended = shared.is_suspended(&key);
                @let slug = format!("bridge-{}-{}", cfg.namespace, cfg.name);
                section.card aria-labelledby=(slug) {
                    h2 id=(slug) { (key) }
                    dl.facts {
                        dt { "URL" }
                        dd { code { "http://" (listen) (cfg.path) } }
                        dt { "Methods" }
                        dd { (cfg.methods.join(", ")) }
                        dt { "State" }
                        dd {
                            @if errors.is_empty() && live.is_some() {
                                span.status.status-delivered { "Ready" }
                            } @else {
                                span.status.status-dead { "Not ready" }
                            }
                            @if suspended { " " span.status.status-pending { "Suspended" } }
                            @for e in &errors {
                                p.error { (e.reason) ": " (e.message) }
                            }
                        }
                        dt { "Auth" }
                        dd { (auth_scheme(cfg.auth.as_ref())) }
                        @if let Some(f) = &cfg.filter {
                            dt { "Filter" }
                            dd { code { (redact(live, f)) } }
                        }
                        dt { "Queue" }
                        dd { (queued(&key, None)) " queued" }
                        @let h = hour.bridges.get(&key).unwrap_or(&none);
                        dt { "Last hour" }
                        dd.hour {
                            span { (h.received) " received" } ", "
                            span { (h.delivered) " delivered" } ", "
                            span { (h.pending) " pending" } ", "
                            span { (h.dead) " dead" } ", "
                            span { (h.filtered) " filtered" }
                        }
                        dt { "Per minute" }
                        dd { (sparkline(&key, &h.per_minute)) }
                    }
                    div.scroll role="region" tabindex="0" aria-label={ "Destinations of " (key) } {
                        table {
                            caption { "Destinations of " (key) }
                            thead { tr { th scope="col" { "Destination" } th scope="col" { "State" } th scope="col" { "Queued" } th scope="col" { span.visually-hidden { "Action" } } } }
                            tbody {
                                @for d in &cfg.destinations {
                                    @let is_paused = paused.contains(&(key.clone(), d.name.clone()));
                                    tr {
                                        td { (d.name) }
                                        td {
                                            @if is_paused && shared.delivery.paused_reason(&key, &d.name) == causeway_config::DestinationReport::DISABLED {
                                                span.status.status-dead title="Failing for its circuit breaker's disableAfter: resume to deliver its jobs" { "Disabled" }
                                            }
                                            @else if is_paused { span.status.status-dead { "Paused" } }
                                            @else if suspended { span.status.status-pending { "Suspended" } }
                                            @else if d.circuit_breaker.is_some() && breakers.contains_key(&(key.clone(), d.name.clone())) {
                                                span.status.status-pending title="Its circuit breaker is open: jobs wait for the probe" { "Circuit open" }
                                            }
                                            @else { span.status.status-delivered { "Active" } }
                                        }
                                        td { (queued(&key, Some(&d.name))) }
                                        td {
                                            @if is_paused {
                                                a href={ "/bridges/" (key) "/destinations/" (d.name) "/resume" } { "Resume " (d.name) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if cfg.subscriptions.is_some() {
                        @let subs = shared.websub.list(Some(key.as_str()));
                        @let now = crate::store::now_ms();
                        div.scroll role="region" tabindex="0" aria-label={ "WebSub subscriptions of " (key) } {
                            table {
                                caption { "WebSub subscriptions of " (key) " (hub " code { "/hub/" (key) } ")" }
                                thead { tr { th scope="col" { "Callback" } th scope="col" { "State" } th scope="col" { "Expires" } th scope="col" { "Delivered (hour)" } th scope="col" { "Failed (hour)" } th scope="col" { "Queued" } } }
                                tbody {
                                    @if subs.is_empty() {
                                        tr { td colspan="6" { "No subscriptions." } }
                                    }
                                    @for s in &subs {
                                        @let name = crate::websub::job_name(&s.id);
                                        @let h = shared.delivery.window.last_hour(&key, &name, now);
                                        tr {
                                            td { code { (s.callback) } }
                                            td {
                                                @if s.expires_at_ms > now { span.status.status-delivered { "Active" } }
                                                @else { span.status.status-dead { "Expired" } }
                                            }
                                            td { (time_el(s.expires_at_ms)) }
                                            td { (h.delivered) }
                                            td { (h.failed) }
                                            td { (queued(&key, Some(name.as_str()))) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if live.is_some() {
                        div.actions {
                            @if suspended {
                                a.button href={ "/bridges/" (key) "/resume" } { "Resume bridge" }
                            } @else {
                                a.button href={ "/bridges/" (key) "/suspend" } { "Suspend bridge" }
                            }
                            a.button.secondary href={ "/bridges/" (key) "/replay" } { "Replay dead letters" }
                            a.button.secondary href={ "/bridges/" (key) "/purge" } { "Purge queue" }
                            a.button.secondary href={ "/events?bridge=" (key) } { "Events" }
                        }
                    }
                    p.hint { "Deleting a bridge is a change to its manifest: " code.delete { "kubectl delete bridge " (cfg.name) " -n " (cfg.namespace) } }
                }
            }
            @if let Some(since) = hour.partial_since_ms {
                p.hint { "The last-hour counts cover the newest " (super::stats::SCAN_LIMIT) " events, received since " (time_el(since)) "." }
            }
            h2 { "Recent actions" }
            (actions_table(recent, "Recent actions"))
        },
    )
}

/// Events per minute over the last hour as bars (server-rendered SVG, no script).
fn sparkline(key: &str, per_minute: &[u64]) -> Markup {
    const W: u64 = 2;
    const H: u64 = 24;
    let max = per_minute.iter().copied().max().unwrap_or(0);
    let total: u64 = per_minute.iter().sum();
    let label = format!(
        "Events per minute to {key} over the last hour: {total} in all, at most {max} in a minute"
    );
    html! {
        svg.spark role="img" aria-label=(label) width=(W * MINUTES as u64) height=(H) viewBox={ "0 0 " (W * MINUTES as u64) " " (H) } xmlns="http://www.w3.org/2000/svg" {
            title { (label) }
            rect.base x="0" y=(H - 1) width=(W * MINUTES as u64) height="1" {}
            @for (i, n) in per_minute.iter().enumerate() {
                @if *n > 0 {
                    @let h = (n * (H - 2)).div_ceil(max.max(1)).max(1);
                    rect x=(i as u64 * W) y=(H - 1 - h) width=(W - 1) height=(h) {}
                }
            }
        }
    }
}

/// The action log's records, newest first.
fn actions_table(recent: &[Action], caption: &str) -> Markup {
    html! {
        @if recent.is_empty() {
            p.hint { "No actions recorded." }
        } @else {
            div.scroll role="region" tabindex="0" aria-label=(caption) {
                table.actions-log {
                    caption.visually-hidden { (caption) }
                    thead { tr {
                        th scope="col" { "At" }
                        th scope="col" { "Action" }
                        th scope="col" { "Bridge" }
                        th scope="col" { "On" }
                        th scope="col" { "Jobs" }
                        th scope="col" { "Via" }
                    } }
                    tbody {
                        @for a in recent {
                            tr {
                                td { (time_el(a.at_ms)) }
                                td { (a.action) }
                                td { (a.bridge) }
                                td {
                                    @if let Some(e) = &a.event { a href={ "/events/" (e) } { code { (e) } } }
                                    @else if let Some(d) = &a.destination { (d) }
                                }
                                td { (a.jobs) }
                                td { (a.via) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `text` without the bridge's secrets (when it still runs).
fn redact(bridge: Option<&std::sync::Arc<ActiveBridge>>, text: &str) -> String {
    match bridge {
        Some(b) => b.redact(text),
        None => text.to_string(),
    }
}

/// One row of the events list as the live stream sends it (the page's script builds the
/// row from it with text nodes only).
pub fn event_row_json(e: &EventRecord) -> serde_json::Value {
    json!({
        "id": e.id.to_string(),
        "bridge": e.bridge,
        "status": e.status.as_str(),
        "reason": e.reason,
        "receivedAt": rfc3339(e.received_at_ms),
    })
}

fn events_url(q: &EventsQuery, before: Option<&str>) -> String {
    let mut url = String::from("/events?");
    let mut parts = vec![];
    for (k, v) in [
        ("bridge", &q.bridge),
        ("status", &q.status),
        ("since", &q.since),
        ("until", &q.until),
        ("webhookId", &q.webhook_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", encode(v)));
        }
    }
    if let Some(b) = before {
        parts.push(format!("before={b}"));
    }
    url.push_str(&parts.join("&"));
    url
}

/// Percent-encodes a query value (bridge keys hold a `/`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn events(
    shared: &Shared,
    q: &EventsQuery,
    events: &[EventRecord],
    more: bool,
    notice: Option<String>,
) -> Markup {
    let active = shared.active();
    let mut bridges: Vec<String> = active.config.bridges.iter().map(|b| b.key()).collect();
    bridges.sort();
    let bridge = q.bridge.as_deref().unwrap_or("");
    let status = q.status.as_deref().unwrap_or("");
    let since = q.since.as_deref().unwrap_or("");
    let until = q.until.as_deref().unwrap_or("");
    let webhook_id = q.webhook_id.as_deref().unwrap_or("");
    let first_page = q.before.as_deref().is_none_or(str::is_empty);
    // Live updates on the first page only, and only when the time range is open-ended:
    // older pages and closed ranges stay as they are.
    let stream = (first_page && until.trim().is_empty()).then(|| {
        let mut url = format!(
            "/events/stream?bridge={}&status={}",
            encode(bridge),
            encode(status)
        );
        for (k, v) in [("since", since), ("webhookId", webhook_id)] {
            if !v.trim().is_empty() {
                url.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        if let Some(newest) = events.first() {
            url.push_str(&format!("&after={}", newest.id));
        }
        url
    });
    layout(
        "Events",
        Nav::Events,
        notice.as_deref(),
        html! {
            form.filters method="get" action="/events" role="search" aria-label="Filter events" {
                div.field {
                    label for="f-bridge" { "Bridge" }
                    select #f-bridge name="bridge" {
                        option value="" selected[bridge.is_empty()] { "All bridges" }
                        @for b in &bridges {
                            option value=(b) selected[b == bridge] { (b) }
                        }
                    }
                }
                div.field {
                    label for="f-status" { "Status" }
                    select #f-status name="status" {
                        option value="" selected[status.is_empty()] { "Any status" }
                        @for s in ["pending", "delivered", "dead", "filtered"] {
                            option value=(s) selected[s == status] { (s) }
                        }
                    }
                }
                div.field {
                    label for="f-since" { "Received from (UTC)" }
                    input #f-since type="datetime-local" name="since" value=(since) step="1";
                }
                div.field {
                    label for="f-until" { "Received before (UTC)" }
                    input #f-until type="datetime-local" name="until" value=(until) step="1";
                }
                div.field {
                    label for="f-webhook-id" { "Webhook id" }
                    input #f-webhook-id type="search" name="webhookId" value=(webhook_id) placeholder="msg_…" autocomplete="off";
                }
                div.field {
                    label for="f-q" { "Event id" }
                    input #f-q type="search" name="q" placeholder="0190…" autocomplete="off";
                }
                button type="submit" { "Apply" }
            }
            p #live role="status" aria-live="polite" {
                @if stream.is_some() { "Live: new events appear at the top." }
            }
            div.scroll role="region" tabindex="0" aria-label={ "Events" } {
                table #events data-stream=[stream.as_deref()] {
                    caption.visually-hidden { "Events, newest first" }
                    thead { tr {
                        th scope="col" { "Received" }
                        th scope="col" { "Event" }
                        th scope="col" { "Bridge" }
                        th scope="col" { "Status" }
                        th scope="col" { "Reason" }
                    } }
                    tbody {
                        @if events.is_empty() {
                            tr #no-events { td colspan="5" { "No events." } }
                        }
                        @for e in events {
                            tr id={ "ev-" (e.id) } {
                                td { (time_el(e.received_at_ms)) }
                                td { a href={ "/events/" (e.id) } { code { (e.id) } } }
                                td { (e.bridge) }
                                td { (status_badge(e.status.as_str())) }
                                td { (e.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            nav.pages aria-label="Pages" {
                @if !first_page {
                    a href=(events_url(q, None)) { "Newest events" }
                }
                @if more {
                    @if let Some(last) = events.last() {
                        a rel="next" href=(events_url(q, Some(&last.id.to_string()))) { "Older events" }
                    }
                }
                span.hint { (PAGE) " per page" }
            }
        },
    )
}

/// Header names that carry credentials, whatever the bridge says (the store removes the
/// bridge's own; this is the second lock).
fn credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
    ]
    .contains(&n.as_str())
        || ["token", "secret", "signature", "password"]
            .iter()
            .any(|w| n.contains(w))
}

/// The payload for reading: JSON pretty-printed, other text as it is, binary as a size.
fn payload_text(body: &[u8]) -> String {
    if body.is_empty() {
        return "(empty)".into();
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Ok(pretty) = serde_json::to_string_pretty(&v)
    {
        return pretty;
    }
    match std::str::from_utf8(body) {
        Ok(text) => text.to_string(),
        Err(_) => format!("({} bytes, not text)", body.len()),
    }
}

fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

pub fn event(
    shared: &Shared,
    d: &EventDetail,
    recent: &[Action],
    notice: Option<String>,
) -> Markup {
    let active = shared.active();
    let live = active.bridges.get(&d.record.bridge);
    let sensitive: Vec<String> = live.map(|b| b.sensitive_headers()).unwrap_or_default();
    let r = &d.record;
    let payload = redact(live, &payload_text(&d.body));
    let (payload, cut_off) = cut(&payload, PAYLOAD_SHOWN);
    layout(
        &format!("Event {}", r.id),
        Nav::Events,
        notice.as_deref(),
        html! {
            dl.facts {
                dt { "Bridge" }
                dd { a href={ "/events?bridge=" (encode(&r.bridge)) } { (r.bridge) } }
                dt { "Received" }
                dd { (time_el(r.received_at_ms)) }
                dt { "Status" }
                dd { (status_badge(r.status.as_str())) }
                @if let Some(reason) = &r.reason {
                    dt { "Reason" }
                    dd { (redact(live, reason)) }
                }
                dt { "Request" }
                dd { code { (r.method) " " (if r.query.is_empty() { String::new() } else { format!("?{}", redact(live, &r.query)) }) } }
                dt { "Body" }
                dd { (r.body_bytes) " bytes" }
                @if let Some(t) = &r.trace {
                    dt { "Trace" }
                    dd #trace-id { code { (t.trace_id) } }
                }
                @if let Some(p) = r.parent {
                    dt { "Fanned out of" }
                    dd { a href={ "/events/" (p) } { code { (p) } } }
                }
                @if !r.children.is_empty() {
                    dt { "Fanned out into" }
                    dd { @for c in &r.children { a href={ "/events/" (c) } { code { (c) } } " " } }
                }
            }
            div.actions {
                a.button href={ "/events/" (r.id) "/replay" } { "Replay event" }
            }
            h2 { "Pipeline" }
            dl.facts.pipeline {
                dt { "Filter" }
                dd #filter-result {
                    @if live.is_some_and(|b| b.cfg.filter.is_none()) { "none configured" }
                    @else if r.status == EventStatus::Filtered { "dropped" @if let Some(reason) = &r.reason { ": " (redact(live, reason)) } }
                    @else { "passed" }
                }
                dt { "Steps" }
                dd #steps-result {
                    @if let Some((job, attempts)) = d.jobs.iter().find(|(j, _)| j.target == JobTarget::Steps) {
                        (status_badge(job.status.as_str()))
                        " after " (attempts.len()) " run(s)"
                        @if let Some(e) = &job.last_error { ": " (redact(live, e)) }
                        @if !r.children.is_empty() { ", fanned out into " (r.children.len()) " event(s)" }
                    } @else if r.status == EventStatus::Filtered { "not run (filtered)" }
                    @else { "none" }
                }
            }
            h2 { "Deliveries" }
            @if d.jobs.is_empty() {
                p { "No deliveries." }
            }
            @for (i, (job, attempts)) in d.jobs.iter().enumerate() {
                @let label = job.target.label();
                section.card.delivery aria-labelledby={ "job-" (i) } data-destination=(label) {
                    h3 id={ "job-" (i) } { (label) " " (status_badge(job.status.as_str())) }
                    @if job.status.queued() {
                        p { "Next try due at " (time_el(job.due_at_ms)) "." }
                    } @else if job.status == JobStatus::Paused {
                        p { "Paused: the destination answered 410 Gone; resume it on the Bridges page." }
                    }
                    @if let Some(e) = &job.last_error {
                        p.error { "Last error: " (redact(live, e)) }
                    }
                    @if attempts.is_empty() {
                        p { "No attempts yet." }
                    } @else {
                        div.scroll role="region" tabindex="0" aria-label={ "Attempts to " (label) } {
                            table.attempts {
                                caption { "Attempts to " (label) ", oldest first" }
                                thead { tr {
                                    th scope="col" { "#" }
                                    th scope="col" { "At" }
                                    th scope="col" { "Status" }
                                    th scope="col" { "Duration" }
                                    th scope="col" { "Response" }
                                    th scope="col" { "Error" }
                                } }
                                tbody {
                                    @for (n, a) in attempts.iter().enumerate() {
                                        tr {
                                            td { (n + 1) }
                                            td { (time_el(a.at_ms)) }
                                            td { @if let Some(c) = a.status_code { (c) } @else { "–" } }
                                            td { (a.duration_ms) " ms" }
                                            td { @if !a.response.is_empty() { pre.snippet tabindex="0" aria-label={ "Response to attempt " (n + 1) } { (redact(live, &a.response)) } } }
                                            td { (a.error.as_deref().map(|e| redact(live, e)).unwrap_or_default()) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Headers" }
            p.hint { "As received, credentials removed." }
            div.scroll role="region" tabindex="0" aria-label={ "Request headers" } {
                table.headers {
                    caption.visually-hidden { "Request headers" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
                    tbody {
                        @for (name, value) in &r.headers {
                            tr {
                                td { code { (name) } }
                                td {
                                    @if credential_header(name) || sensitive.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                                        em { "redacted" }
                                    } @else {
                                        code { (redact(live, value)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Payload" }
            pre.payload tabindex="0" aria-label="Payload" { code { (payload) } }
            @if cut_off {
                p.hint { "Cut at " (PAYLOAD_SHOWN / 1024) " KiB." }
            }
            h2 { "Actions on this event" }
            (actions_table(recent, "Actions on this event"))
        },
    )
}

/// Seconds as the page shows a histogram bound: `≤ 2.5 ms`, `> 30 s`.
fn bound(s: Option<f64>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.is_infinite() => "> 30 s".into(),
        Some(s) if s < 1.0 => format!("≤ {} ms", s * 1000.0),
        Some(s) => format!("≤ {s} s"),
    }
}

pub fn plugins(shared: &Shared, calls: &HashMap<String, PluginCalls>) -> Markup {
    let active = shared.active();
    let states: HashMap<String, causeway_plugins::PluginState> = shared
        .plugins
        .status()
        .into_iter()
        .map(|s| (s.key.clone(), s))
        .collect();
    let mut cfgs: Vec<_> = active.config.plugins.iter().collect();
    cfgs.sort_by_key(|p| p.key());
    // Local mode (`causeway up`) has no pool namespace.
    let pool = match (
        active.config.namespace.as_str(),
        active.config.pool.as_str(),
    ) {
        ("", "") => "(local)".to_string(),
        ("", p) => p.to_string(),
        (ns, p) => format!("{ns}/{p}"),
    };
    let none = PluginCalls::default();
    layout(
        "Plugins",
        Nav::Plugins,
        None,
        html! {
            @if cfgs.is_empty() {
                p { "No plugins are configured." }
            } @else {
                p.hint { "Calls, errors and call times since this worker started; times are the upper bound of the histogram bucket that holds them." }
                div.scroll role="region" tabindex="0" aria-label={ "Plugins" } {
                    table {
                        caption.visually-hidden { "Plugins" }
                        thead { tr {
                            th scope="col" { "Plugin" }
                            th scope="col" { "Route" }
                            th scope="col" { "Digest" }
                            th scope="col" { "Size" }
                            th scope="col" { "Pool" }
                            th scope="col" { "Calls" }
                            th scope="col" { "Errors" }
                            th scope="col" { "p50" }
                            th scope="col" { "p99" }
                            th scope="col" { "State" }
                        } }
                        tbody {
                            @for p in &cfgs {
                                @let key = p.key();
                                @let state = states.get(&key);
                                @let c = calls.get(&key).unwrap_or(&none);
                                @let error = active.errors.iter().find(|e| e.kind == causeway_config::Kind::Plugin && e.namespace == p.namespace && e.name == p.name);
                                tr {
                                    td { (key) }
                                    td { @if let Some(r) = &p.route { code { (r) } } @else { "(private)" } }
                                    td { @if let Some(d) = state.and_then(|s| s.digest.as_ref()) { code.digest { (d) } } }
                                    td { @if let Some(s) = state.and_then(|s| s.size) { (s) " bytes" } }
                                    td { (pool) }
                                    td.calls { (c.calls) }
                                    td.errors { (c.errors) }
                                    td { (bound(c.p50_s)) }
                                    td { (bound(c.p99_s)) }
                                    td {
                                        @if error.is_none() && state.is_some_and(|s| s.loaded) {
                                            span.status.status-delivered { "Ready" }
                                        } @else {
                                            span.status.status-dead { "Not ready" }
                                        }
                                        @if let Some(e) = error { p.error { (e.reason) ": " (e.message) } }
                                        @else if let Some(e) = state.and_then(|s| s.error.as_ref()) { p.error { (e) } }
                                    }
                                }
                            }
                        }
                    }
                }
                @for p in &cfgs {
                    @let key = p.key();
                    @let secrets: Vec<&str> = p.variables.values().map(|v| v.expose()).filter(|v| !v.is_empty()).collect();
                    @let lines = shared.plugins.logs(&causeway_plugins::PluginRef { namespace: p.namespace.clone(), name: p.name.clone() });
                    @let slug = format!("logs-{}-{}", p.namespace, p.name);
                    section.card aria-labelledby=(slug) {
                        h2 id=(slug) { "Recent log lines of " (key) }
                        @if lines.is_empty() {
                            p.hint { "No log lines." }
                        } @else {
                            pre.logs tabindex="0" aria-label={ "Log lines of " (key) } {
                                @for l in lines.iter().rev().take(LOG_LINES_SHOWN).rev() {
                                    (causeway_pipeline::redact::redact(l, &secrets)) "\n"
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Log lines a plugin's section shows at most (the newest).
const LOG_LINES_SHOWN: usize = 50;
