//! `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) over the [`KvStore`] trait, so a
//! plugin's state lives in the worker's store and survives restarts.
//!
//! Each plugin sees one bucket, keyed by `namespace/name`, opened with the identifier
//! `""` or `"default"`; any other identifier is `no-such-store`. `KvStore` calls may block
//! (the runtime's store fsyncs), so they run on tokio's blocking pool.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// Persistent per-plugin key-value state, implemented by the runtime's store.
/// `plugin` is `namespace/name`. Errors are plain messages shown to the guest.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String>;
    fn delete(&self, plugin: &str, key: &str) -> Result<(), String>;
    fn list_keys(&self, plugin: &str) -> Result<Vec<String>, String>;
    /// `atomics.increment`: the key's decimal value (none is 0) plus `delta`, written back
    /// atomically. The default reads then writes, which the host serialises within one
    /// worker; a store shared by several workers overrides it with one transaction.
    fn increment(&self, plugin: &str, key: &str, delta: u64) -> Result<u64, String> {
        let current = match self.get(plugin, key)? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("value of {key:?} is not a decimal u64"))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| format!("incrementing {key:?} overflows u64"))?;
        self.set(plugin, key, next.to_string().as_bytes())?;
        Ok(next)
    }
}

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "causeway:host/keyvalue",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::KvBucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => super::KvError,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Keys returned per `list-keys` page.
const LIST_PAGE: usize = 1000;
/// Largest value a guest may store (the runtime's store keeps values inline).
pub const MAX_VALUE_BYTES: usize = 16 << 20;

/// The host object behind a guest's `bucket` handle.
pub struct KvBucket {
    plugin: String,
}

/// An error for the guest (`no-such-store`, `other(msg)`), or a trap.
pub enum KvError {
    NoSuchStore,
    Other(String),
    Trap(wasmtime::Error),
}

impl From<wasmtime::component::ResourceTableError> for KvError {
    fn from(e: wasmtime::component::ResourceTableError) -> Self {
        KvError::Trap(e.into())
    }
}

/// Per-call keyvalue state held in the store.
pub(crate) struct KvCtx {
    pub plugin: String,
    pub kv: Arc<dyn KvStore>,
    /// Serialises `atomics.increment` read-modify-writes within this worker.
    pub increment_lock: Arc<tokio::sync::Mutex<()>>,
}

pub(crate) struct KvView<'a> {
    pub ctx: &'a KvCtx,
    pub table: &'a mut ResourceTable,
}

struct HasKv;
impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKv>(linker, get)?;
    atomics::add_to_linker::<T, HasKv>(linker, get)?;
    batch::add_to_linker::<T, HasKv>(linker, get)?;
    Ok(())
}

/// Runs a `KvStore` call on the blocking pool.
async fn blocking<R: Send + 'static>(
    kv: &Arc<dyn KvStore>,
    f: impl FnOnce(&dyn KvStore) -> Result<R, String> + Send + 'static,
) -> Result<R, KvError> {
    let kv = kv.clone();
    match tokio::task::spawn_blocking(move || f(kv.as_ref())).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(msg)) => Err(KvError::Other(msg)),
        Err(e) => Err(KvError::Other(format!("keyvalue task failed: {e}"))),
    }
}

impl KvView<'_> {
    fn plugin_of(&self, bucket: &Resource<KvBucket>) -> Result<String, KvError> {
        Ok(self.table.get(bucket)?.plugin.clone())
    }
}

fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::Other(format!(
            "value of {} bytes is larger than the limit of {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<KvBucket>, KvError> {
        match identifier.as_str() {
            "" | "default" => Ok(self.table.push(KvBucket {
                plugin: self.ctx.plugin.clone(),
            })?),
            _ => Err(KvError::NoSuchStore),
        }
    }

    fn convert_error(&mut self, err: KvError) -> wasmtime::Result<store::Error> {
        match err {
            KvError::NoSuchStore => Ok(store::Error::NoSuchStore),
            KvError::Other(msg) => Ok(store::Error::Other(msg)),
            KvError::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| kv.get(&plugin, &key)).await
    }

    async fn set(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        check_value(&value)?;
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| kv.set(&plugin, &key, &value)).await
    }

    async fn delete(&mut self, bucket: Resource<KvBucket>, key: String) -> Result<(), KvError> {
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| kv.delete(&plugin, &key)).await
    }

    async fn exists(&mut self, bucket: Resource<KvBucket>, key: String) -> Result<bool, KvError> {
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| {
            kv.get(&plugin, &key).map(|v| v.is_some())
        })
        .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<KvBucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, KvError> {
        let plugin = self.plugin_of(&bucket)?;
        let mut keys = blocking(&self.ctx.kv, move |kv| kv.list_keys(&plugin)).await?;
        // A stable order makes the offset cursor meaningful across pages.
        keys.sort_unstable();
        let start = usize::try_from(cursor.unwrap_or(0))
            .unwrap_or(usize::MAX)
            .min(keys.len());
        let end = start.saturating_add(LIST_PAGE).min(keys.len());
        let next = if end < keys.len() {
            Some(end as u64)
        } else {
            None
        };
        Ok(store::KeyResponse {
            keys: keys[start..end].to_vec(),
            cursor: next,
        })
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<KvBucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, KvError> {
        let plugin = self.plugin_of(&bucket)?;
        let _guard = self.ctx.increment_lock.clone().lock_owned().await;
        blocking(&self.ctx.kv, move |kv| kv.increment(&plugin, &key, delta)).await
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, KvError> {
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| {
            keys.into_iter()
                .map(|k| Ok(kv.get(&plugin, &k)?.map(|v| (k, v))))
                .collect()
        })
        .await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<KvBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KvError> {
        for (_, v) in &key_values {
            check_value(v)?;
        }
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| {
            key_values
                .iter()
                .try_for_each(|(k, v)| kv.set(&plugin, k, v))
        })
        .await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> Result<(), KvError> {
        let plugin = self.plugin_of(&bucket)?;
        blocking(&self.ctx.kv, move |kv| {
            keys.iter().try_for_each(|k| kv.delete(&plugin, k))
        })
        .await
    }
}

type Buckets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// An in-memory [`KvStore`] (tests, benchmarks).
#[derive(Default)]
pub struct MemoryKv {
    data: Mutex<Buckets>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a BTreeMap half-updated in a way
    // that matters here; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KvStore for MemoryKv {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(lock(&self.data)
            .get(plugin)
            .and_then(|b| b.get(key))
            .cloned())
    }
    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        lock(&self.data)
            .entry(plugin.to_string())
            .or_default()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<(), String> {
        if let Some(b) = lock(&self.data).get_mut(plugin) {
            b.remove(key);
        }
        Ok(())
    }
    fn list_keys(&self, plugin: &str) -> Result<Vec<String>, String> {
        Ok(lock(&self.data)
            .get(plugin)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default())
    }
}

/// A small file-backed [`KvStore`]: one JSON file per plugin in a directory, rewritten
/// atomically (write + fsync + rename) on every change. For tests and local runs; the
/// worker uses its own on-disk store.
pub struct FileKv {
    dir: PathBuf,
    cache: Mutex<Buckets>,
}

impl FileKv {
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<FileKv> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        Ok(FileKv {
            dir,
            cache: Mutex::new(Buckets::new()),
        })
    }

    fn path(&self, plugin: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", hex::encode(plugin.as_bytes())))
    }

    fn load<'a>(
        &self,
        cache: &'a mut Buckets,
        plugin: &str,
    ) -> Result<&'a mut BTreeMap<String, Vec<u8>>, String> {
        if !cache.contains_key(plugin) {
            let path = self.path(plugin);
            let bucket = match std::fs::read(&path) {
                Ok(bytes) => {
                    let encoded: BTreeMap<String, String> = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("reading {}: {e}", path.display()))?;
                    let mut out = BTreeMap::new();
                    for (k, v) in encoded {
                        let v = base64::engine::general_purpose::STANDARD
                            .decode(v)
                            .map_err(|e| format!("reading {}: {e}", path.display()))?;
                        out.insert(k, v);
                    }
                    out
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(format!("reading {}: {e}", path.display())),
            };
            cache.insert(plugin.to_string(), bucket);
        }
        cache
            .get_mut(plugin)
            .ok_or_else(|| "bucket vanished".to_string())
    }

    fn save(&self, plugin: &str, bucket: &BTreeMap<String, Vec<u8>>) -> Result<(), String> {
        let encoded: BTreeMap<&String, String> = bucket
            .iter()
            .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v)))
            .collect();
        let bytes = serde_json::to_vec(&encoded).map_err(|e| e.to_string())?;
        let path = self.path(plugin);
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

impl KvStore for FileKv {
    fn get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut cache = lock(&self.cache);
        Ok(self.load(&mut cache, plugin)?.get(key).cloned())
    }
    fn set(&self, plugin: &str, key: &str, value: &[u8]) -> Result<(), String> {
        let mut cache = lock(&self.cache);
        let bucket = self.load(&mut cache, plugin)?;
        bucket.insert(key.to_string(), value.to_vec());
        self.save(plugin, bucket)
    }
    fn delete(&self, plugin: &str, key: &str) -> Result<(), String> {
        let mut cache = lock(&self.cache);
        let bucket = self.load(&mut cache, plugin)?;
        if bucket.remove(key).is_some() {
            self.save(plugin, bucket)?;
        }
        Ok(())
    }
    fn list_keys(&self, plugin: &str) -> Result<Vec<String>, String> {
        let mut cache = lock(&self.cache);
        Ok(self.load(&mut cache, plugin)?.keys().cloned().collect())
    }
}
