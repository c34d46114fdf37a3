//! One module per parser that sees untrusted input.

pub mod filters;
pub mod manifests;
pub mod signatures;
pub mod templates;
pub mod worker_config;

/// The manifests of `examples/`: seeds for the manifest and WorkerConfig targets.
pub const EXAMPLE_MANIFESTS: &[&str] = &[
    include_str!("../../../examples/quickstart/quickstart.yaml"),
    include_str!("../../../examples/stripe/stripe.yaml"),
    include_str!("../../../examples/github/github.yaml"),
    include_str!("../../../examples/loyalty/loyalty.yaml"),
    include_str!("seed.yaml"),
];

/// A header map from raw pairs; pairs that are not a valid header are left out.
pub fn header_map(pairs: &[(String, Vec<u8>)]) -> http::HeaderMap {
    header_map_checked(pairs).0
}

/// [`header_map`], and whether every pair was a valid header.
pub fn header_map_checked(pairs: &[(String, Vec<u8>)]) -> (http::HeaderMap, bool) {
    let mut h = http::HeaderMap::new();
    let mut all = true;
    for (k, v) in pairs {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_bytes(v),
        ) {
            (Ok(k), Ok(v)) => {
                h.append(k, v);
            }
            _ => all = false,
        }
    }
    (h, all)
}
