use std::net::IpAddr;

use causeway_config::{AuthConfig, RetryConfig, SecretValue, SubscriptionsConfig};

use super::http::{hub_request, parse_form, parse_path};
use super::*;

fn cfg(allowed: &[&str]) -> SubscriptionsConfig {
    SubscriptionsConfig {
        auth: AuthConfig::ApiKey {
            header: Some("x-api-key".into()),
            query_param: None,
            keys: vec![SecretValue("k".into())],
        },
        allowed_callback_hosts: allowed.iter().map(|s| s.to_string()).collect(),
        default_lease_seconds: 600,
        min_lease_seconds: 60,
        max_lease_seconds: 3600,
        retry: RetryConfig::default(),
        timeout_ms: 1000,
        max_subscriptions: 10,
        signing_secret: None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The metadata address and link-local addresses are refused whatever the allow-list says
/// (only the pool's allowedDestinationCidrs unlock them, as for destinations).
#[tokio::test]
async fn metadata_and_link_local_callbacks_are_refused_even_when_listed() {
    let guard = NetGuard::default();
    for (url, listed) in [
        ("http://169.254.169.254/latest", "http://169.254.169.254"),
        ("http://169.254.10.1:8080/cb", "http://169.254.10.1:8080"),
        ("http://[fe80::1]:8080/cb", "http://[fe80::1]:8080"),
        ("http://[fd00:ec2::254]/cb", "http://[fd00:ec2::254]"),
        ("http://100.100.100.200/cb", "http://100.100.100.200"),
    ] {
        let err = check_callback(&guard, &cfg(&[listed]), url)
            .await
            .expect_err(url);
        assert!(
            err.contains("link-local") || err.contains("metadata"),
            "{url}: {err}"
        );
    }
    // The classification itself, directly.
    assert_eq!(classify(ip("169.254.169.254")), AddrClass::Metadata);
    assert_eq!(classify(ip("169.254.1.1")), AddrClass::LinkLocal);
    assert_eq!(classify(ip("fe80::1")), AddrClass::LinkLocal);
    assert!(check_address(&guard, ip("169.254.169.254"), true).is_err());
    assert!(check_address(&guard, ip("169.254.1.1"), true).is_err());
    // The pool may unlock a link-local range, as for destinations.
    let unlocked = NetGuard::default();
    unlocked.set_allowed(vec![
        crate::netguard::Cidr::parse("169.254.10.0/24").unwrap(),
    ]);
    assert!(check_address(&unlocked, ip("169.254.10.1"), true).is_ok());
}

/// Metadata and plugin names are refused before any resolution.
#[tokio::test]
async fn metadata_and_plugin_names_are_refused() {
    let guard = NetGuard::default();
    let err = check_callback(
        &guard,
        &cfg(&["http://metadata.google.internal"]),
        "http://metadata.google.internal/x",
    )
    .await
    .unwrap_err();
    assert!(err.contains("metadata"), "{err}");
    let err = check_callback(
        &guard,
        &cfg(&["http://*.internal"]),
        "http://crm.internal/x",
    )
    .await
    .unwrap_err();
    assert!(err.contains("plugin"), "{err}");
}

/// Deny by default; loopback and private addresses need the host listed by name or address,
/// never through a wildcard; a listed loopback address on another port is refused.
#[tokio::test]
async fn the_allow_list_decides_and_non_public_addresses_need_an_explicit_entry() {
    let guard = NetGuard::default();
    let err = check_callback(&guard, &cfg(&[]), "http://127.0.0.1:8080/cb")
        .await
        .unwrap_err();
    assert!(
        err.contains("not in the hub's allowedCallbackHosts"),
        "{err}"
    );
    let c = cfg(&["http://127.0.0.1:8080"]);
    check_callback(&guard, &c, "http://127.0.0.1:8080/cb?x=1")
        .await
        .expect("listed");
    assert!(
        check_callback(&guard, &c, "http://127.0.0.1:8081/cb")
            .await
            .is_err()
    );
    assert!(
        check_callback(&guard, &c, "http://127.0.0.2:8080/cb")
            .await
            .is_err()
    );
    let err = check_callback(&guard, &cfg(&["*://*:*"]), "http://10.1.2.3:8080/cb")
        .await
        .unwrap_err();
    assert!(err.contains("private"), "{err}");
    let err = check_callback(&guard, &cfg(&["*://*:*"]), "http://127.0.0.1:8080/cb")
        .await
        .unwrap_err();
    assert!(err.contains("loopback"), "{err}");
    // Names resolve, and every address must pass (localhost is in /etc/hosts).
    let err = check_callback(&guard, &cfg(&["*://*:*"]), "http://localhost:8080/cb")
        .await
        .unwrap_err();
    assert!(err.contains("loopback"), "{err}");
    check_callback(
        &guard,
        &cfg(&["http://localhost:8080"]),
        "http://localhost:8080/cb",
    )
    .await
    .expect("listed by name");
    // The worker's denied ranges win over the list.
    let denied = NetGuard::new(vec![crate::netguard::Cidr::parse("127.0.0.0/8").unwrap()]);
    assert!(
        check_callback(&denied, &c, "http://127.0.0.1:8080/cb")
            .await
            .is_err()
    );
}

#[test]
fn callbacks_must_be_plain_http_urls() {
    for bad in [
        "ftp://127.0.0.1/x",
        "http://user:pw@127.0.0.1/x",
        "http://127.0.0.1/x#frag",
        "not a url",
        "nats://127.0.0.1:4222/x",
    ] {
        assert!(split_callback(bad).is_err(), "{bad}");
    }
    assert_eq!(
        split_callback("https://[::1]/cb").unwrap(),
        ("https".into(), "::1".into(), 443)
    );
}

#[test]
fn forms_decode_and_the_hub_parameters_are_checked() {
    let f = parse_form(b"hub.mode=subscribe&hub.topic=http%3A%2F%2Fh%3A1%2Fhub%2Fns%2Fb&hub.callback=http%3A%2F%2F127.0.0.1%3A9%2Fcb%3Fa%3D1&hub.secret=s+1&hub.lease_seconds=120").unwrap();
    let r = hub_request(&f, "/hub/ns/b").unwrap();
    assert!(r.subscribe);
    assert_eq!(r.callback, "http://127.0.0.1:9/cb?a=1");
    assert_eq!(r.secret.as_deref(), Some("s 1"));
    assert_eq!(r.lease_seconds, Some(120));
    assert!(parse_form(b"a=%zz").is_err());
    assert!(parse_form(&[0xff, b'=', b'1']).is_err());
    let topic = "hub.topic=http%3A%2F%2Fh%2Fhub%2Fns%2Fb";
    let cb = "hub.callback=http%3A%2F%2F127.0.0.1%2Fcb";
    for (form, why) in [
        (format!("{topic}&{cb}"), "hub.mode is missing"),
        (format!("hub.mode=watch&{topic}&{cb}"), "is not subscribe"),
        (format!("hub.mode=subscribe&{cb}"), "hub.topic is missing"),
        (
            format!("hub.mode=subscribe&hub.topic=http%3A%2F%2Fh%2Fhub%2Fns%2Fother&{cb}"),
            "this hub's URL",
        ),
        (
            format!("hub.mode=subscribe&{topic}"),
            "hub.callback is missing",
        ),
        (
            format!("hub.mode=subscribe&{topic}&hub.callback=ftp%3A%2F%2Fh%2Fx"),
            "http:// or https://",
        ),
        (
            format!("hub.mode=subscribe&{topic}&{cb}&hub.lease_seconds=soon"),
            "not a positive number",
        ),
        (
            format!("hub.mode=subscribe&{topic}&{cb}&hub.lease_seconds=0"),
            "not a positive number",
        ),
        (
            format!(
                "hub.mode=subscribe&{topic}&{cb}&hub.secret={}",
                "x".repeat(200)
            ),
            "1 to 199 bytes",
        ),
        (
            format!("hub.mode=subscribe&hub.mode=unsubscribe&{topic}&{cb}"),
            "more than once",
        ),
    ] {
        let f = parse_form(form.as_bytes()).unwrap();
        let err = hub_request(&f, "/hub/ns/b").unwrap_err();
        assert!(err.contains(why), "{form}: {err}");
    }
}

#[test]
fn hub_paths_and_job_names() {
    assert_eq!(parse_path("/hub/ns/b"), Some(("ns", "b")));
    assert_eq!(parse_path("/hub/ns/b/x"), None);
    assert_eq!(parse_path("/hub/ns"), None);
    assert_eq!(parse_path("/hooks/ns/b"), None);
    assert_eq!(subscription_id(&job_name("abc")), Some("abc"));
    assert_eq!(subscription_id("orders"), None);
}

#[test]
fn leases_are_brought_within_bounds() {
    let c = cfg(&[]);
    assert_eq!(c.lease_for(None), 600);
    assert_eq!(c.lease_for(Some(5)), 60);
    assert_eq!(c.lease_for(Some(100_000)), 3600);
    assert_eq!(c.lease_for(Some(120)), 120);
}
