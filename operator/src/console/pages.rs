//! The operator console's pages (maud, as the worker's console): rendered from the
//! workers' JSON answers, every value escaped.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::{EventsQuery, PAGE, PoolAnswer, PoolTarget, Row, csrf_token, css_url};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Bridges,
    Events,
    Actions,
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
                title { (title) " · Causeway cluster console" }
                link rel="stylesheet" href=(css_url());
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Console" {
                        a.brand href="/" { "Causeway cluster" }
                        ul {
                            li { a href="/" aria-current=[current(Nav::Bridges)] { "Bridges" } }
                            li { a href="/events" aria-current=[current(Nav::Events)] { "Events" } }
                            li { a href="/actions" aria-current=[current(Nav::Actions)] { "Actions" } }
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

fn status_badge(status: &str) -> Markup {
    html! { span class={ "status status-" (status) } { (status) } }
}

fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Percent-encodes a path segment or query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A UUID in its hyphenated form.
pub fn is_event_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A time the workers' events API reads: RFC 3339, the same without seconds or offset
/// (a browser's `datetime-local`, UTC), or milliseconds since the epoch.
pub fn check_time(v: &str) -> Result<(), String> {
    use time::format_description::well_known::Rfc3339;
    let ok = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        || time::OffsetDateTime::parse(v, &Rfc3339).is_ok()
        || time::PrimitiveDateTime::parse(
            v,
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .is_ok()
        || time::PrimitiveDateTime::parse(
            v,
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]"),
        )
        .is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "not a time: {v:?} (RFC 3339 such as 2026-12-02T07:00:00Z, or milliseconds since the epoch)"
        ))
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        Nav::None,
        None,
        html! {
            p { "The cluster console needs the console token (the chart keeps it in a Secret; "
                code { "kubectl causeway console" } " prints the command that shows it)." }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form.stack method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf_token());
                label for="token" { "Console token" }
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

fn pool_name(p: &PoolTarget) -> String {
    format!("{}/{}", p.namespace, p.pool)
}

pub fn bridges(answers: &[PoolAnswer], notice: Option<&str>) -> Markup {
    layout(
        "Bridges",
        Nav::Bridges,
        notice,
        html! {
            @if answers.is_empty() {
                p { "No worker pools yet." }
            }
            @for a in answers {
                @let name = pool_name(&a.pool);
                section.pool aria-labelledby={ "pool-" (a.pool.namespace) "-" (a.pool.pool) } {
                    h2 id={ "pool-" (a.pool.namespace) "-" (a.pool.pool) } { "Pool " (name) }
                    p { (a.pool.workers.len()) " running worker(s) · "
                        a href={ "/events?pool=" (encode(&name)) } { "its events" } }
                    @match &a.answer {
                        Err(e) => p.error role="alert" { "Not reachable: " (e) },
                        Ok(v) => {
                            @let list = v["bridges"].as_array().cloned().unwrap_or_default();
                            @if list.is_empty() {
                                p { "No bridges." }
                            } @else {
                                div.scroll role="region" tabindex="0" aria-label={ "Bridges of " (name) } {
                                    table {
                                        thead { tr {
                                            th scope="col" { "Bridge" }
                                            th scope="col" { "Path" }
                                            th scope="col" { "State" }
                                            th scope="col" { "Destinations" }
                                            th scope="col" { "Actions" }
                                        } }
                                        tbody {
                                            @for b in &list {
                                                @let key = s(b, "bridge");
                                                @let (bns, bname) = key.split_once('/').unwrap_or(("", key));
                                                @let suspended = b["suspended"].as_bool().unwrap_or(false);
                                                tr id={ "bridge-" (a.pool.namespace) "-" (a.pool.pool) "-" (bname) } {
                                                    td { a href={ "/events?pool=" (encode(&name)) "&bridge=" (encode(key)) } { (key) } }
                                                    td { code { (s(b, "path")) } }
                                                    td { @if suspended { (status_badge("suspended")) } @else { (status_badge("active")) } }
                                                    td {
                                                        @for d in b["destinations"].as_array().cloned().unwrap_or_default() {
                                                            span.dest { (s(&d, "name"))
                                                                @if d["paused"].as_bool().unwrap_or(false) { " (paused)" } }
                                                            " "
                                                        }
                                                    }
                                                    td {
                                                        @let action = if suspended { "resume" } else { "suspend" };
                                                        a href={ "/pools/" (encode(&a.pool.namespace)) "/" (encode(&a.pool.pool)) "/bridges/" (encode(bns)) "/" (encode(bname)) "/" (action) } {
                                                            @if suspended { "Resume" } @else { "Suspend" }
                                                            span.visually-hidden { " " (key) }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn events_url(q: &EventsQuery, before: Option<&str>) -> String {
    let mut parts = vec![];
    for (k, v) in [
        ("pool", &q.pool),
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
    format!("/events?{}", parts.join("&"))
}

pub fn events(
    q: &EventsQuery,
    pools: &[PoolTarget],
    rows: &[Row],
    more: bool,
    errors: &[String],
) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let (pool, bridge, status) = (v(&q.pool), v(&q.bridge), v(&q.status));
    let first_page = q.before.as_deref().is_none_or(str::is_empty);
    layout(
        "Events",
        Nav::Events,
        None,
        html! {
            form.filters method="get" action="/events" role="search" aria-label="Filter events" {
                div.field {
                    label for="f-pool" { "Pool" }
                    select #f-pool name="pool" {
                        option value="" selected[pool.is_empty()] { "All pools" }
                        @for p in pools {
                            @let n = pool_name(p);
                            option value=(n) selected[n == pool] { (n) }
                        }
                    }
                }
                div.field {
                    label for="f-bridge" { "Bridge (namespace/name)" }
                    input #f-bridge type="search" name="bridge" value=(bridge) autocomplete="off";
                }
                div.field {
                    label for="f-status" { "Status" }
                    select #f-status name="status" {
                        option value="" selected[status.is_empty()] { "Any status" }
                        @for st in super::STATUSES {
                            option value=(st) selected[st == status] { (st) }
                        }
                    }
                }
                div.field {
                    label for="f-since" { "Received from (UTC)" }
                    input #f-since type="datetime-local" name="since" value=(v(&q.since)) step="1";
                }
                div.field {
                    label for="f-until" { "Received before (UTC)" }
                    input #f-until type="datetime-local" name="until" value=(v(&q.until)) step="1";
                }
                div.field {
                    label for="f-webhook-id" { "Webhook id" }
                    input #f-webhook-id type="search" name="webhookId" value=(v(&q.webhook_id)) autocomplete="off";
                }
                button type="submit" { "Apply" }
            }
            @for e in errors {
                p.error role="alert" { "Not reachable: " (e) }
            }
            div.scroll role="region" tabindex="0" aria-label="Events" {
                table #events {
                    caption.visually-hidden { "Events of every pool, newest first" }
                    thead { tr {
                        th scope="col" { "Received" }
                        th scope="col" { "Event" }
                        th scope="col" { "Pool" }
                        th scope="col" { "Bridge" }
                        th scope="col" { "Status" }
                        th scope="col" { "Reason" }
                    } }
                    tbody {
                        @if rows.is_empty() {
                            tr #no-events { td colspan="6" { "No events." } }
                        }
                        @for r in rows {
                            @let id = s(&r.event, "id");
                            tr id={ "ev-" (id) } {
                                td { time datetime=(s(&r.event, "receivedAt")) { (s(&r.event, "receivedAt")) } }
                                td { a href={ "/events/" (encode(&r.pool.namespace)) "/" (encode(&r.pool.pool)) "/" (id) } { code { (id) } } }
                                td { (pool_name(&r.pool)) }
                                td { (s(&r.event, "bridge")) }
                                td { (status_badge(s(&r.event, "status"))) }
                                td { (s(&r.event, "reason")) }
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
                    @if let Some(last) = rows.last() {
                        a rel="next" href=(events_url(q, Some(s(&last.event, "id")))) { "Older events" }
                    }
                }
                span.hint { (PAGE) " per page" }
            }
        },
    )
}

pub fn event(p: &PoolTarget, e: &Value, actions: Option<&Value>, notice: Option<&str>) -> Markup {
    let id = s(e, "id");
    layout(
        &format!("Event {id}"),
        Nav::Events,
        notice,
        html! {
            dl.facts {
                dt { "Pool" } dd { (pool_name(p)) }
                dt { "Bridge" } dd { (s(e, "bridge")) }
                dt { "Received" } dd { (s(e, "receivedAt")) }
                dt { "Status" } dd { (status_badge(s(e, "status"))) " " (s(e, "reason")) }
            }
            p { a.button href={ "/events/" (encode(&p.namespace)) "/" (encode(&p.pool)) "/" (id) "/replay" } { "Replay" } }
            h2 { "Deliveries" }
            @for d in e["deliveries"].as_array().cloned().unwrap_or_default() {
                section.delivery {
                    h3 { (s(&d, "destination")) " " (status_badge(s(&d, "status"))) }
                    @if let Some(err) = d["lastError"].as_str() { p.error { (err) } }
                    div.scroll role="region" tabindex="0" aria-label={ "Attempts to " (s(&d, "destination")) } {
                        table.attempts {
                            thead { tr {
                                th scope="col" { "At" }
                                th scope="col" { "Status code" }
                                th scope="col" { "Duration" }
                                th scope="col" { "Error" }
                            } }
                            tbody {
                                @for a in d["attempts"].as_array().cloned().unwrap_or_default() {
                                    tr {
                                        td { (s(&a, "at")) }
                                        td { (a["statusCode"].as_u64().map(|c| c.to_string()).unwrap_or_default()) }
                                        td { (a["durationMs"].as_u64().unwrap_or(0)) " ms" }
                                        td { (s(&a, "error")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(list) = actions.and_then(|a| a["actions"].as_array()) {
                h2 { "Actions on this event" }
                (action_table(list, p))
            }
        },
    )
}

fn action_table(list: &[Value], p: &PoolTarget) -> Markup {
    html! {
        div.scroll role="region" tabindex="0" aria-label={ "Actions of " (pool_name(p)) } {
            table {
                thead { tr {
                    th scope="col" { "At" }
                    th scope="col" { "Pool" }
                    th scope="col" { "Action" }
                    th scope="col" { "Bridge" }
                    th scope="col" { "Jobs" }
                    th scope="col" { "Through" }
                } }
                tbody {
                    @for a in list {
                        tr {
                            td { (rfc3339(a["atMs"].as_u64().unwrap_or(0))) }
                            td { (pool_name(p)) }
                            td { (s(a, "action")) }
                            td { (s(a, "bridge")) }
                            td { (a["jobs"].as_u64().unwrap_or(0)) }
                            td { (s(a, "via")) }
                        }
                    }
                }
            }
        }
    }
}

pub fn actions(answers: &[PoolAnswer]) -> Markup {
    layout(
        "Actions",
        Nav::Actions,
        None,
        html! {
            p { "The newest actions of every pool, from its action log." }
            @for a in answers {
                h2 { "Pool " (pool_name(&a.pool)) }
                @match &a.answer {
                    Err(e) => p.error role="alert" { "Not reachable: " (e) },
                    Ok(v) => {
                        @let list = v["actions"].as_array().cloned().unwrap_or_default();
                        @if list.is_empty() { p { "No actions." } } @else { (action_table(&list, &a.pool)) }
                    }
                }
            }
        },
    )
}
