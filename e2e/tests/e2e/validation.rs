//! Scenario 3: objects the API refuses. The CRDs' CEL rules run in the real API server;
//! `kubectl apply` fails and prints the rule's message.

use anyhow::{Result, ensure};
use causeway_e2e::harness::{TestNs, kubectl_stdin};

const CASES: &[(&str, &str, &str)] = &[
    (
        "a bridge with nothing to do",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: idle}\nspec: {filter: 'true'}\n",
        "a bridge needs at least one destination or one step",
    ),
    (
        "two auth schemes",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: twoauth}\nspec:\n  ingress:\n    auth:\n      basic: {username: u, passwordRef: {name: s, key: k}}\n      apiKey: {header: x-api-key, secretRef: {name: s, key: k}}\n  destinations: [{name: d, url: 'http://example.com'}]\n",
        "set at most one of standardWebhooks, hmac, jwt, basic, apiKey",
    ),
    (
        "a destination URL that is not HTTP",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: ftp}\nspec:\n  destinations: [{name: d, url: 'ftp://example.com/x'}]\n",
        "url must be http://, https:// or nats://",
    ),
    (
        "a nats url with credentials in it",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: natsuser}\nspec:\n  destinations: [{name: d, url: 'nats://u:p@nats:4222/orders'}]\n",
        "a nats url is nats://host[:port]/subject",
    ),
    (
        "a fixed backoff without delays",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: fixed}\nspec:\n  destinations: [{name: d, url: 'http://example.com', backoff: {policy: fixed}}]\n",
        "the fixed policy needs a delays list",
    ),
    (
        "an hmac without preset or header",
        "apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: hmac}\nspec:\n  ingress: {auth: {hmac: {secretRef: {name: s, key: k}}}}\n  destinations: [{name: d, url: 'http://example.com'}]\n",
        "hmac needs a preset or a header",
    ),
    (
        "a plugin with two sources",
        "apiVersion: causeway.dev/v1alpha1\nkind: Plugin\nmetadata: {name: two}\nspec:\n  source:\n    configMap: {name: c, key: k}\n    oci: {reference: 'example.com/p:1'}\n",
        "set exactly one of file, http, oci, configMap",
    ),
    (
        "an embedded pool with two replicas",
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: big}\nspec: {replicas: 2}\n",
        "embedded storage serves one replica; use postgres storage for more",
    ),
    (
        "postgres storage without its section",
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: pg}\nspec: {storage: {type: postgres}}\n",
        "postgres storage needs a postgres section",
    ),
    (
        "autoscaling with min above max",
        "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: hpa}\nspec:\n  storage: {type: postgres, postgres: {urlSecretRef: {name: pg, key: url}}}\n  autoscaling: {minReplicas: 5, maxReplicas: 2}\n",
        "minReplicas must not exceed maxReplicas",
    ),
];

#[tokio::test]
async fn s3_invalid_objects_are_refused_with_the_rules_message() -> Result<()> {
    let ns = TestNs::new("cel").await?;
    let mut failures = Vec::new();
    for (what, yaml, message) in CASES {
        let out = kubectl_stdin(&["apply", "-n", &ns.name, "-f", "-"], yaml)?;
        if out.success() {
            failures.push(format!("{what}: accepted ({})", out.stdout.trim()));
        } else if !out.stderr.contains(message) {
            failures.push(format!(
                "{what}: refused without {message:?}: {}",
                out.stderr.trim()
            ));
        }
    }
    // A valid object of each kind is accepted: the refusals are the rules', not a broken schema.
    let valid = "apiVersion: causeway.dev/v1alpha1\nkind: WorkerPool\nmetadata: {name: ok}\nspec: {replicas: 0}\n---\n\
                 apiVersion: causeway.dev/v1alpha1\nkind: Bridge\nmetadata: {name: ok}\nspec:\n  pool: ok\n  destinations: [{name: d, url: 'http://example.com'}]\n";
    let out = kubectl_stdin(
        &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
        valid,
    )?;
    if !out.success() {
        failures.push(format!("valid objects refused: {}", out.stderr.trim()));
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    ns.pass();
    Ok(())
}
