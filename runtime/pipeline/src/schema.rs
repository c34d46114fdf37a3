//! Payload schemas: a bridge's `spec.schema`, compiled once per configuration load and
//! checked against each payload at ingress.
//!
//! The schema is a JSON Schema document (draft 2020-12 unless its `$schema` names another
//! draft), checked against its meta-schema when compiled. Nothing is fetched: the validator
//! is built without its HTTP and file retrievers, so a `$ref` to anything outside the
//! document fails to compile instead of making the worker reach out. See
//! `docs/event-apis.md`.

use std::fmt;

/// At most this many violations are reported to the sender.
pub const MAX_VIOLATIONS: usize = 5;

/// Longest message kept per violation: a message can quote the offending value, which is
/// the sender's own data but may be large.
const MAX_MESSAGE_BYTES: usize = 256;

/// A compiled payload schema.
pub struct PayloadSchema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayloadSchema")
    }
}

/// One way a payload does not match: where (a JSON Pointer into the payload, `""` for the
/// whole payload) and what.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl PayloadSchema {
    /// Compile a schema given as JSON text. The error says what is wrong with it.
    pub fn compile(text: &str) -> Result<PayloadSchema, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        Self::compile_value(&value)
    }

    /// Compile a schema given as a JSON value.
    pub fn compile_value(value: &serde_json::Value) -> Result<PayloadSchema, String> {
        if !value.is_object() && !value.is_boolean() {
            return Err("a JSON Schema is an object (or true/false)".into());
        }
        let validator = jsonschema::validator_for(value).map_err(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                format!("invalid JSON Schema: {e}")
            } else {
                format!("invalid JSON Schema at {at}: {e}")
            }
        })?;
        Ok(PayloadSchema { validator })
    }

    /// Check a payload: the first [`MAX_VIOLATIONS`] violations when it does not match.
    pub fn check(&self, payload: &serde_json::Value) -> Result<(), Vec<Violation>> {
        if self.validator.is_valid(payload) {
            return Ok(());
        }
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(payload)
            .take(MAX_VIOLATIONS)
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                message: cut(e.to_string()),
            })
            .collect();
        if violations.is_empty() {
            // `is_valid` and `iter_errors` agree; this keeps a mismatch from letting it in.
            return Err(vec![Violation {
                path: String::new(),
                message: "does not match the schema".into(),
            }]);
        }
        Err(violations)
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> PayloadSchema {
        PayloadSchema::compile_value(&json!({
            "type": "object",
            "required": ["id", "amount"],
            "properties": {
                "id": {"type": "string"},
                "amount": {"type": "number", "minimum": 0},
                "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_matching_payload_passes() {
        assert_eq!(
            order_schema().check(&json!({"id": "o1", "amount": 12.5, "items": [{"sku": "a"}]})),
            Ok(())
        );
    }

    #[test]
    fn violations_name_the_path_and_are_bounded() {
        let errs = order_schema()
            .check(&json!({"amount": -1, "items": [{"x": 1}, {}, {}, {}, {}, {}]}))
            .unwrap_err();
        assert_eq!(errs.len(), MAX_VIOLATIONS);
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        assert!(paths.contains(&""), "{errs:?}"); // required id
        assert!(paths.contains(&"/amount"), "{errs:?}");
        assert!(paths.contains(&"/items/0"), "{errs:?}");
        let missing = errs.iter().find(|v| v.path.is_empty()).unwrap();
        assert!(missing.message.contains("\"id\""), "{missing:?}");
    }

    #[test]
    fn a_bad_schema_is_refused_with_a_reason() {
        let e = PayloadSchema::compile_value(&json!({"type": "integr"})).unwrap_err();
        assert!(e.starts_with("invalid JSON Schema"), "{e}");
        let e = PayloadSchema::compile("{not json").unwrap_err();
        assert!(e.starts_with("not JSON"), "{e}");
        let e = PayloadSchema::compile_value(&json!([1])).unwrap_err();
        assert!(e.contains("is an object"), "{e}");
    }

    #[test]
    fn nothing_outside_the_document_is_fetched() {
        for r in [
            "http://127.0.0.1:9/schema.json",
            "file:///etc/passwd",
            "other.json",
        ] {
            let e = PayloadSchema::compile_value(&json!({"$ref": r})).unwrap_err();
            assert!(e.starts_with("invalid JSON Schema"), "{r}: {e}");
        }
        // A reference inside the document works.
        let s = PayloadSchema::compile_value(&json!({
            "$defs": {"id": {"type": "string"}},
            "properties": {"id": {"$ref": "#/$defs/id"}}
        }))
        .unwrap();
        assert!(s.check(&json!({"id": 1})).is_err());
        assert!(s.check(&json!({"id": "a"})).is_ok());
    }
}
