//! The generated CRDs: committed copies match the Rust types, schemas are structural, and
//! the printer columns, names and subresources are what users see in kubectl.

use std::path::PathBuf;

use causeway_crds::crd;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_crds_match_the_rust_types() {
    let drift = crd::drifted(&root(), &crd::all());
    assert!(drift.is_empty(), "run `make crds`: out of date: {drift:?}");
}

#[test]
fn drift_check_catches_a_field_added_without_make_crds() {
    // A test of the test: add a field to one CRD's schema, as a developer would by editing a
    // Rust type without running `make crds`, and the check must name both copies.
    let mut crds = crd::all();
    let (file, bridge) = &mut crds[0];
    assert_eq!(*file, "bridges.yaml");
    let schema = bridge.spec.versions[0]
        .schema
        .as_mut()
        .unwrap()
        .open_api_v3_schema
        .as_mut()
        .unwrap();
    let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
    spec.properties
        .as_mut()
        .unwrap()
        .insert("newField".into(), Default::default());
    let drift = crd::drifted(&root(), &crds);
    let names: Vec<String> = drift
        .iter()
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            "crds/yaml/bridges.yaml",
            "charts/causeway/crds/bridges.yaml"
        ]
    );
}

/// The rules of a structural schema that the API server enforces, checked on the JSON.
fn check_structural(path: &str, v: &Value, errs: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    let has = |k: &str| m.contains_key(k);
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !has("type") && !preserve && !int_or_string {
        errs.push(format!("{path}: no type"));
    }
    for bad in [
        "$ref",
        "definitions",
        "$defs",
        "oneOf",
        "not",
        "const",
        "additionalItems",
        "patternProperties",
        "dependencies",
        "$schema",
        "id",
        "uniqueItems",
    ] {
        if has(bad) {
            errs.push(format!(
                "{path}: {bad} is not allowed in a structural schema"
            ));
        }
    }
    if let Some(Value::String(t)) = m.get("type") {
        if t == "null" {
            errs.push(format!("{path}: type null"));
        }
    } else if let Some(t) = m.get("type")
        && !t.is_string()
    {
        errs.push(format!("{path}: type must be a single string, got {t}"));
    }
    if has("properties")
        && m.get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
    {
        errs.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    for branch in ["anyOf", "allOf"] {
        if let Some(Value::Array(items)) = m.get(branch) {
            for (i, item) in items.iter().enumerate() {
                if let Value::Object(im) = item {
                    for k in [
                        "type",
                        "default",
                        "description",
                        "nullable",
                        "additionalProperties",
                    ] {
                        if im.contains_key(k) {
                            errs.push(format!(
                                "{path}.{branch}[{i}]: {k} not allowed inside {branch}"
                            ));
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        for (k, p) in props {
            check_structural(&format!("{path}.{k}"), p, errs);
        }
    }
    if let Some(items) = m.get("items") {
        check_structural(&format!("{path}[]"), items, errs);
    }
    if let Some(ap @ Value::Object(_)) = m.get("additionalProperties") {
        check_structural(&format!("{path}{{}}"), ap, errs);
    }
    if m.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
        let keys = m
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if keys.is_empty() {
            errs.push(format!("{path}: list-type map without keys"));
        }
        let required = m
            .get("items")
            .and_then(|i| i.get("required"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for k in keys {
            if !required.contains(&k) {
                errs.push(format!("{path}: map key {k} must be required in items"));
            }
        }
    }
}

#[test]
fn schemas_are_structural() {
    for (file, c) in crd::all() {
        let v = serde_json::to_value(&c).unwrap();
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut errs = Vec::new();
        check_structural(file, schema, &mut errs);
        assert!(errs.is_empty(), "{file}:\n{}", errs.join("\n"));
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    fn walk(path: &str, v: &Value, missing: &mut Vec<String>) {
        if let Some(Value::Object(props)) = v.get("properties") {
            for (k, p) in props {
                let here = format!("{path}.{k}");
                // metadata, and the embedded Kubernetes types, are documented upstream.
                let ours = !here.ends_with(".metadata")
                    && !here.contains(".resources")
                    && !here.contains(".affinity")
                    && !here.contains(".tolerations")
                    && !here.contains(".conditions");
                if ours
                    && p.get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                {
                    missing.push(here.clone());
                }
                if ours {
                    walk(&here, p, missing);
                    if let Some(items) = p.get("items") {
                        walk(&format!("{here}[]"), items, missing);
                    }
                }
            }
        }
    }
    for (file, c) in crd::all() {
        let v = serde_json::to_value(&c).unwrap();
        let mut missing = Vec::new();
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk("", &schema["properties"]["spec"], &mut missing);
        assert!(
            missing.is_empty(),
            "{file}: fields without a doc comment: {missing:?}"
        );
    }
}

#[test]
fn names_columns_and_subresources() {
    let all = crd::all();
    let get = |name: &str| {
        serde_json::to_value(&all.iter().find(|(f, _)| *f == name).unwrap().1).unwrap()
    };
    for (file, short, cols) in [
        (
            "bridges.yaml",
            "br",
            vec![
                "Ready",
                "Reason",
                "Pool",
                "URL",
                "Age",
                "Message",
                "Destinations",
                "Delivered-1h",
                "Dead-1h",
                "Pending",
            ],
        ),
        (
            "plugins.yaml",
            "plg",
            vec!["Ready", "Reason", "Digest", "Pool", "Age", "Message"],
        ),
        (
            "workerpools.yaml",
            "wpool",
            vec!["Ready", "Reason", "Replicas", "Store", "Age", "Message"],
        ),
    ] {
        let v = get(file);
        assert_eq!(v["spec"]["group"], "causeway.dev");
        assert_eq!(v["spec"]["scope"], "Namespaced");
        assert_eq!(v["spec"]["names"]["shortNames"], serde_json::json!([short]));
        assert_eq!(
            v["spec"]["names"]["categories"],
            serde_json::json!(["causeway"])
        );
        let version = &v["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        let names: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, cols, "{file}");
        assert!(
            version["subresources"]["status"].is_object(),
            "{file} has a status subresource"
        );
    }
    let pool = get("workerpools.yaml");
    assert_eq!(
        pool["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
}

#[test]
fn cel_rules_are_present_where_the_api_promises_them() {
    let text: String = crd::all()
        .iter()
        .map(|(_, c)| serde_json::to_string(c).unwrap())
        .collect();
    for needle in [
        "set exactly one of file, http, oci, configMap",
        "a bridge needs at least one destination or one step",
        "destination names must be unique",
        "url must be http://, https:// or nats:// (or start with a template reference",
        "a nats url is nats://host[:port]/subject",
        "set at most one of passwordRef, tokenRef, nkeySeedRef, credentialsRef",
        "set at most one of standardWebhooks, hmac, jwt, basic, apiKey",
        "embedded storage serves one replica",
        r#"\"x-kubernetes-list-map-keys\":[\"name\"]"#,
    ] {
        let needle = needle.replace("\\\"", "\"");
        assert!(text.contains(&needle), "missing {needle}");
    }
}
