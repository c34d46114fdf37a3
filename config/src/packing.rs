//! How a rendered [`WorkerConfig`] is stored in its pool's config Secret, and read back.
//!
//! Kubernetes refuses a Secret whose data is larger than 1 MiB. A small config is stored as
//! plain JSON under [`CONFIG_KEY`], readable with `kubectl`; a config whose JSON is larger
//! than [`COMPRESS_ABOVE`] is stored zstd-compressed under [`CONFIG_ZSTD_KEY`] instead
//! (rendered configs are repetitive: every bridge has the same fields, so they compress
//! about tenfold or better). A config that does not fit even compressed is refused with
//! [`PackError::TooLarge`] before anything is written: the workers keep the previous one
//! and the pool says why. The worker reads whichever key is there, and bounds what it
//! decompresses. See `docs/operator.md`, "The config Secret".

use std::io::Read;

use crate::worker::{CONFIG_KEY, WorkerConfig};

/// Key of the zstd-compressed JSON `WorkerConfig` in a pool's config Secret.
pub const CONFIG_ZSTD_KEY: &str = "config.json.zst";
/// JSON larger than this is compressed.
pub const COMPRESS_ABOVE: usize = 512 << 10;
/// What the API server accepts in one Secret's data (keys and values together).
pub const SECRET_DATA_LIMIT: usize = 1 << 20;
/// The largest decompressed config a worker accepts: far above any config that compresses
/// under 1 MiB in practice, and a bound on what a forged Secret can make it allocate.
pub const MAX_UNPACKED: u64 = 512 << 20;
/// zstd level: level 9 compresses a 10,000-bridge config about as well as the slowest
/// levels at a fraction of their time.
const LEVEL: i32 = 9;

/// Why a config cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("serialise worker config: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("compress worker config: {0}")]
    Compress(#[source] std::io::Error),
    #[error(
        "the rendered config does not fit in a Secret: {json} bytes of JSON, {packed} bytes \
         compressed, over the {limit} bytes Kubernetes allows; the workers keep the previous \
         config. Spread this pool's bridges over more pools, or shorten what they repeat \
         (body templates, headers)"
    )]
    TooLarge {
        json: usize,
        packed: usize,
        limit: usize,
    },
}

/// A config ready for the Secret: the key it goes under and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub key: &'static str,
    pub bytes: Vec<u8>,
    /// Size of the JSON before compression.
    pub json_len: usize,
}

/// Serialise `config`, compressed when its JSON is larger than [`COMPRESS_ABOVE`].
pub fn pack(config: &WorkerConfig) -> Result<Packed, PackError> {
    let json = serde_json::to_vec(config)?;
    let json_len = json.len();
    if json_len <= COMPRESS_ABOVE {
        return Ok(Packed {
            key: CONFIG_KEY,
            bytes: json,
            json_len,
        });
    }
    let packed = zstd::bulk::compress(&json, LEVEL).map_err(PackError::Compress)?;
    drop(json);
    if packed.len() + CONFIG_ZSTD_KEY.len() > SECRET_DATA_LIMIT {
        return Err(PackError::TooLarge {
            json: json_len,
            packed: packed.len(),
            limit: SECRET_DATA_LIMIT,
        });
    }
    Ok(Packed {
        key: CONFIG_ZSTD_KEY,
        bytes: packed,
        json_len,
    })
}

/// Why a Secret's data holds no usable config.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnpackError {
    #[error("no key {CONFIG_KEY:?} or {CONFIG_ZSTD_KEY:?}")]
    Missing,
    #[error("{CONFIG_ZSTD_KEY} does not decompress: {0}")]
    Decompress(String),
    #[error("{CONFIG_ZSTD_KEY} decompresses to more than {0} bytes")]
    TooLarge(u64),
    #[error("{key} is not a WorkerConfig ({message})")]
    Parse { key: &'static str, message: String },
    #[error("{key} has no version")]
    NoVersion { key: &'static str },
}

/// The config in a config Secret's data, given a lookup of its keys. The compressed key
/// wins when both are there (the operator writes one; the other is a leftover).
pub fn unpack<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<WorkerConfig, UnpackError> {
    unpack_bounded(get, MAX_UNPACKED)
}

/// [`unpack`], decompressing at most `limit` bytes.
fn unpack_bounded<'a>(
    get: impl Fn(&str) -> Option<&'a [u8]>,
    limit: u64,
) -> Result<WorkerConfig, UnpackError> {
    let (key, json) = match (get(CONFIG_ZSTD_KEY), get(CONFIG_KEY)) {
        (Some(z), _) => (CONFIG_ZSTD_KEY, decompress(z, limit)?),
        (None, Some(plain)) => (CONFIG_KEY, plain.to_vec()),
        (None, None) => return Err(UnpackError::Missing),
    };
    // The error's kind and position only: serde's message may quote a value, and the
    // config holds secret values.
    let config: WorkerConfig = serde_json::from_slice(&json).map_err(|e| UnpackError::Parse {
        key,
        message: format!(
            "{:?} error at line {}, column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    if config.version.is_empty() {
        return Err(UnpackError::NoVersion { key });
    }
    Ok(config)
}

fn decompress(bytes: &[u8], limit: u64) -> Result<Vec<u8>, UnpackError> {
    let decoder = zstd::stream::read::Decoder::new(bytes)
        .map_err(|e| UnpackError::Decompress(e.to_string()))?;
    let mut out = Vec::new();
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| UnpackError::Decompress(e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(UnpackError::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(version: &str, pad: usize) -> WorkerConfig {
        WorkerConfig {
            version: version.into(),
            pool: "p".repeat(pad),
            ..WorkerConfig::default()
        }
    }

    fn lookup<'a>(key: &'static str, bytes: &'a [u8]) -> impl Fn(&str) -> Option<&'a [u8]> + 'a {
        move |k| (k == key).then_some(bytes)
    }

    #[test]
    fn a_small_config_stays_plain_json() {
        let c = config("v1", 10);
        let p = pack(&c).unwrap();
        assert_eq!(p.key, CONFIG_KEY);
        assert_eq!(p.bytes, serde_json::to_vec(&c).unwrap());
        assert_eq!(unpack(lookup(p.key, &p.bytes)).unwrap(), c);
    }

    #[test]
    fn a_large_config_is_compressed_and_reads_back() {
        let c = config("v2", COMPRESS_ABOVE);
        let p = pack(&c).unwrap();
        assert_eq!(p.key, CONFIG_ZSTD_KEY);
        assert!(p.json_len > COMPRESS_ABOVE);
        assert!(p.bytes.len() < p.json_len / 100, "{} bytes", p.bytes.len());
        assert_eq!(unpack(lookup(p.key, &p.bytes)).unwrap(), c);
    }

    #[test]
    fn bad_data_is_a_clear_error() {
        assert_eq!(unpack(|_| None), Err(UnpackError::Missing));
        assert!(matches!(
            unpack(lookup(CONFIG_ZSTD_KEY, b"not zstd")),
            Err(UnpackError::Decompress(_))
        ));
        let z = zstd::bulk::compress(b"{not json", 3).unwrap();
        assert!(matches!(
            unpack(lookup(CONFIG_ZSTD_KEY, &z)),
            Err(UnpackError::Parse {
                key: CONFIG_ZSTD_KEY,
                ..
            })
        ));
        let no_version = serde_json::to_vec(&config("", 1)).unwrap();
        assert_eq!(
            unpack(lookup(CONFIG_KEY, &no_version)),
            Err(UnpackError::NoVersion { key: CONFIG_KEY })
        );
    }

    // A forged Secret that decompresses to more than the bound is refused, reading no
    // more than the bound (a small bound here: the real one is 512 MiB).
    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; 8 << 20];
        let z = zstd::bulk::compress(&zeros, 1).unwrap();
        assert!(z.len() < 4 << 10, "8 MiB of zeros in {} bytes", z.len());
        assert_eq!(
            unpack_bounded(lookup(CONFIG_ZSTD_KEY, &z), 1 << 20),
            Err(UnpackError::TooLarge(1 << 20))
        );
        // Within the bound, the same bytes decompress (and are then no config).
        assert!(matches!(
            unpack_bounded(lookup(CONFIG_ZSTD_KEY, &z), 16 << 20),
            Err(UnpackError::Parse { .. })
        ));
    }

    #[test]
    fn the_compressed_key_wins_over_a_leftover_plain_one() {
        let new = config("new", COMPRESS_ABOVE);
        let p = pack(&new).unwrap();
        let old = serde_json::to_vec(&config("old", 1)).unwrap();
        let got = unpack(|k| match k {
            CONFIG_ZSTD_KEY => Some(p.bytes.as_slice()),
            CONFIG_KEY => Some(old.as_slice()),
            _ => None,
        })
        .unwrap();
        assert_eq!(got.version, "new");
    }
}
