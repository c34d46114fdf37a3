//! The plugin's persistent state, through `wasi:keyvalue/store@0.2.0-draft`.
//!
//! Every plugin has one bucket of its own. It is opened with the identifier `""`,
//! which both Causeway and the reference host (`wasmtime serve -S keyvalue`) accept
//! (Causeway also accepts `"default"`). Keys are strings, values are bytes; the helpers
//! below store JSON.
//!
//! Operations are single-key and not transactional: two instances of the same plugin
//! running at once can interleave a read-modify-write. Design keys so that a repeated
//! call writes the same key with the same value (keys derived from the event id), and
//! an interleaving costs at most an entry in an index, never a duplicate side effect.

use crate::bindings::wasi::keyvalue::store;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

/// A keyvalue error, with the operation and key it happened on.
#[derive(Debug)]
pub struct Error {
    op: &'static str,
    key: String,
    detail: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "keyvalue {}: {}", self.op, self.detail)
        } else {
            write!(f, "keyvalue {} {:?}: {}", self.op, self.key, self.detail)
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// Whether the host worked and the stored value just was not the JSON expected.
    pub fn is_decode(&self) -> bool {
        self.op == "decode"
    }
}

fn err(op: &'static str, key: &str, e: store::Error) -> Error {
    let detail = match e {
        store::Error::NoSuchStore => "no such store".to_string(),
        store::Error::AccessDenied => "access denied".to_string(),
        store::Error::Other(msg) => msg,
    };
    Error {
        op,
        key: key.to_string(),
        detail,
    }
}

fn json_err(op: &'static str, key: &str, e: serde_json::Error) -> Error {
    Error {
        op,
        key: key.to_string(),
        detail: e.to_string(),
    }
}

/// The plugin's own bucket.
pub struct Bucket(store::Bucket);

impl Bucket {
    /// Opens the plugin's bucket.
    pub fn open() -> Result<Self, Error> {
        store::open("").map(Bucket).map_err(|e| err("open", "", e))
    }

    /// The raw bytes stored under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(key).map_err(|e| err("get", key, e))
    }

    /// Stores raw bytes under `key`, replacing any previous value.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.0.set(key, value).map_err(|e| err("set", key, e))
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.0.delete(key).map_err(|e| err("delete", key, e))
    }

    /// Whether `key` holds a value.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.0.exists(key).map_err(|e| err("exists", key, e))
    }

    /// Every key in the bucket, following the host's cursor. The order is the host's
    /// and carries no meaning: keep an index of your own if order matters.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .0
                .list_keys(cursor)
                .map_err(|e| err("list-keys", "", e))?;
            keys.extend(page.keys);
            match page.cursor {
                // A host that returns the cursor it was given would loop forever.
                Some(next) if Some(next) != cursor => cursor = Some(next),
                _ => return Ok(keys),
            }
        }
    }

    /// The JSON value stored under `key`, decoded into `T`.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| json_err("decode", key, e)),
        }
    }

    /// Stores `value` as JSON under `key`.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value).map_err(|e| json_err("encode", key, e))?;
        self.set(key, &bytes)
    }
}
