//! Loading manifests from files: multi-document YAML, directories, and `Secret` and
//! `ConfigMap` objects so that local mode resolves `secretKeyRef` from the same files.
//!
//! Every error names the file, the document (1-based) and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::common::{API_VERSION, DEFAULT_NAMESPACE};
use crate::config::Inventory;
use crate::validate::{FieldError, validate_bridge, validate_plugin, validate_pool};
use crate::{Bridge, Plugin, WorkerPool};

/// Why a manifest could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    /// 1-based document number within the file; 0 when the file itself failed.
    pub document: usize,
    /// `Kind namespace/name` when known.
    pub object: Option<String>,
    /// Field path such as `spec.destinations[0].retries`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.document > 0 {
            write!(f, ": document {}", self.document)?;
        }
        if let Some(o) = &self.object {
            write!(f, " ({o})")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}

/// Kinds the loader accepts.
pub const SUPPORTED_KINDS: &str =
    "Bridge, Plugin, WorkerPool (causeway.dev/v1alpha1), Secret, ConfigMap (v1)";

/// Load every manifest under `paths` (files, or directories searched recursively for
/// `*.yaml` and `*.yml`, hidden entries skipped, in name order).
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Inventory, ManifestError> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p.as_ref(), &mut files)?;
    }
    let mut inv = Inventory::default();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
            file: file.display().to_string(),
            document: 0,
            object: None,
            field: None,
            message: format!("cannot read: {e}"),
        })?;
        load_str_into(&text, file, &mut inv, &mut seen)?;
    }
    Ok(inv)
}

/// Every file `load_paths` would read, for change detection.
pub fn manifest_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p.as_ref(), &mut files)?;
    }
    Ok(files)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let err = |message: String| ManifestError {
        file: path.display().to_string(),
        document: 0,
        object: None,
        field: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(format!("cannot list: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_files(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml")
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Load the documents of one file's text. `file` names the file in errors and anchors
/// relative `source.file` paths.
pub fn load_str(text: &str, file: &Path) -> Result<Inventory, ManifestError> {
    let mut inv = Inventory::default();
    load_str_into(text, file, &mut inv, &mut BTreeMap::new())?;
    Ok(inv)
}

fn load_str_into(
    text: &str,
    file: &Path,
    inv: &mut Inventory,
    seen: &mut BTreeMap<String, String>,
) -> Result<(), ManifestError> {
    let file_name = file.display().to_string();
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |object: Option<String>, field: Option<String>, message: String| ManifestError {
            file: file_name.clone(),
            document,
            object,
            field,
            message,
        };
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| err(None, None, format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let serde_yaml::Value::Mapping(map) = &value else {
            return Err(err(
                None,
                None,
                "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
            ));
        };
        let get_str = |k: &str| map.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let kind =
            get_str("kind").ok_or_else(|| err(None, Some("kind".into()), "missing".into()))?;
        let api_version = get_str("apiVersion")
            .ok_or_else(|| err(None, Some("apiVersion".into()), "missing".into()))?;
        let meta = map.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let namespace = meta
            .and_then(|m| m.get("namespace"))
            .and_then(|v| v.as_str())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string();
        let object = Some(format!(
            "{kind} {namespace}/{}",
            name.as_deref().unwrap_or("?")
        ));
        let Some(name) = name else {
            return Err(err(object, Some("metadata.name".into()), "missing".into()));
        };
        let causeway = matches!(kind.as_str(), "Bridge" | "Plugin" | "WorkerPool");
        let core = matches!(kind.as_str(), "Secret" | "ConfigMap");
        if causeway && api_version != API_VERSION {
            return Err(err(
                object,
                Some("apiVersion".into()),
                format!("{api_version:?} is not served; use {API_VERSION}"),
            ));
        }
        if core && api_version != "v1" {
            return Err(err(
                object,
                Some("apiVersion".into()),
                format!("{api_version:?} is not served; use v1"),
            ));
        }
        if !causeway && !core {
            return Err(err(
                object,
                Some("kind".into()),
                format!("{kind:?} is not supported here (supported: {SUPPORTED_KINDS})"),
            ));
        }
        if causeway {
            for key in map.keys() {
                let k = key.as_str().unwrap_or("?");
                if !matches!(k, "apiVersion" | "kind" | "metadata" | "spec" | "status") {
                    return Err(err(
                        object,
                        Some(k.to_string()),
                        "unknown field (expected apiVersion, kind, metadata, spec)".into(),
                    ));
                }
            }
            if !map.contains_key("spec") {
                return Err(err(object, Some("spec".into()), "missing".into()));
            }
        }
        let key = format!("{kind} {namespace}/{name}");
        if let Some(first) = seen.insert(key.clone(), format!("{file_name} document {document}")) {
            return Err(err(
                object,
                None,
                format!("defined twice (first in {first})"),
            ));
        }
        let to_err = |e: (Option<String>, String)| err(object.clone(), e.0, e.1);
        let with_ns = |mut m: kube::core::ObjectMeta| {
            m.namespace = Some(namespace.clone());
            m
        };
        match kind.as_str() {
            "Bridge" => {
                let mut b: Bridge = typed(value.clone()).map_err(to_err)?;
                validate_bridge(&b.spec).map_err(|e| to_err(first_field(e)))?;
                b.metadata = with_ns(b.metadata);
                inv.bridges.push(Arc::new(b));
            }
            "Plugin" => {
                let mut p: Plugin = typed(value.clone()).map_err(to_err)?;
                validate_plugin(&p.spec).map_err(|e| to_err(first_field(e)))?;
                if let Some(f) = &p.spec.source.file {
                    let path = Path::new(f);
                    if path.is_relative() {
                        p.spec.source.file = Some(base_dir.join(path).display().to_string());
                    }
                }
                p.metadata = with_ns(p.metadata);
                inv.plugins.push(Arc::new(p));
            }
            "WorkerPool" => {
                if name.len() > crate::config::MAX_POOL_NAME {
                    return Err(err(
                        object,
                        Some("metadata.name".into()),
                        format!(
                            "a WorkerPool name has at most {} characters",
                            crate::config::MAX_POOL_NAME
                        ),
                    ));
                }
                let mut w: WorkerPool = typed(value.clone()).map_err(to_err)?;
                validate_pool(&w.spec).map_err(|e| to_err(first_field(e)))?;
                w.metadata = with_ns(w.metadata);
                inv.pools.push(Arc::new(w));
            }
            "Secret" => {
                let s: Secret = typed(value.clone()).map_err(to_err)?;
                if crate::common::secret_opted_in(s.metadata.labels.as_ref()) {
                    inv.opted_in_secrets
                        .insert((namespace.clone(), name.clone()));
                }
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                inv.secrets.insert((namespace.clone(), name.clone()), data);
            }
            "ConfigMap" => {
                let c: ConfigMap = typed(value.clone()).map_err(to_err)?;
                let mut data: BTreeMap<String, Vec<u8>> = c
                    .binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in c.data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                inv.config_maps
                    .insert((namespace.clone(), name.clone()), data);
            }
            _ => unreachable!("kinds checked above"),
        }
    }
    Ok(())
}

fn first_field(errs: Vec<FieldError>) -> (Option<String>, String) {
    let mut it = errs.into_iter();
    match it.next() {
        Some(first) => {
            let rest = it.count();
            let more = if rest > 0 {
                format!(" (and {rest} more)")
            } else {
                String::new()
            };
            (Some(first.path), format!("{}{more}", first.message))
        }
        None => (None, "invalid".into()),
    }
}

/// Deserialize with the path of the failing field.
fn typed<T: DeserializeOwned>(value: serde_yaml::Value) -> Result<T, (Option<String>, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            None
        } else {
            Some(path)
        };
        (field, e.into_inner().to_string())
    })
}
