//! `loyalty`: rewards frequent customers. A bridge step in the loyalty scenario.
//!
//! Input: an order event `{"customer": {"id": "c-loyal", "email": "..."}, "orderId": "o-1", ...}`.
//!
//! 1. Asks the `store-api` plugin for the customer's purchases, through ordinary
//!    outbound HTTP to `http://store-api.internal/customers/<id>/purchases`. The host
//!    resolves `*.internal` to the plugin, in-process or in another pool; the manifest
//!    must allow it (`allowedOutboundHosts: ["http://store-api.internal"]`).
//! 2. Counts the purchases of the last 30 days.
//! 3. Ten or more: adds `"loyal": true` and a `"discountCode"` to the order and fans
//!    out two events (`causeway-fanout: true` and a JSON array): the enriched order and
//!    an email request `{"kind": "email", "to": ..., "template": "loyalty-discount", "code": ...}`.
//!    Fewer: the order goes on unchanged (200, same body).
//!
//! If store-api cannot be reached or fails, the answer is 502: the step fails and the
//! host retries it, rather than letting a loyal customer's order through without code.
//!
//! The step may run more than once for the same event (at least once). The code is
//! derived from the customer id and the event id, so a repeat produces the same code
//! and the same two events, which downstream deduplicates.
//!
//! Variables (`wasi:config`), all optional:
//! * `store_api_url`: base URL of the store service (default `http://store-api.internal`);
//! * `min_purchases`: how many purchases make a customer loyal (default 10);
//! * `window_days`: the window purchases are counted in (default 30).

use causeway_plugin_kit::{config, headers, reply, time, url};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

const DEFAULT_STORE_API: &str = "http://store-api.internal";

/// The part of store-api's answer this plugin reads.
#[derive(Deserialize)]
struct Purchase {
    at: String,
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let event_id = headers::event_id(&request).map(str::to_string);
    let body = request.body_mut().contents().await?.to_vec();

    let mut order: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(order)) => order,
        Ok(_) => {
            return Ok(reply::error(
                StatusCode::BAD_REQUEST,
                "expected a JSON object",
            ));
        }
        Err(e) => {
            return Ok(reply::error(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON: {e}"),
            ));
        }
    };
    // `Value` indexing yields `Null` for a missing key (`Map` indexing would panic).
    let customer = order.get("customer").cloned().unwrap_or(Value::Null);
    let Some(customer_id) = customer["id"].as_str().map(str::to_string) else {
        return Ok(reply::error(
            StatusCode::BAD_REQUEST,
            "customer.id is missing",
        ));
    };

    let settings = Settings::from_config();
    let purchases = match fetch_purchases(&settings.store_api, &customer_id).await {
        Ok(purchases) => purchases,
        Err(e) => {
            eprintln!("loyalty: store-api failed for customer {customer_id}: {e}");
            return Ok(reply::error(
                StatusCode::BAD_GATEWAY,
                &format!("store-api: {e}"),
            ));
        }
    };
    let recent = count_recent(&purchases, time::now_unix(), settings.window_days);
    println!(
        "loyalty: customer {customer_id} has {recent} purchases in {} days",
        settings.window_days
    );

    if recent < settings.min_purchases {
        // Not (yet) loyal: pass the order on exactly as it came.
        let mut response = Response::new(Body::from(body));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse()?);
        return Ok(response);
    }

    // Without an event id (a direct call, not a bridge step), the order id keeps the
    // code stable across repeats.
    let salt = event_id
        .or_else(|| match order.get("orderId") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        })
        .unwrap_or_default();
    let code = discount_code(&customer_id, &salt);
    order.insert("loyal".into(), Value::Bool(true));
    order.insert("discountCode".into(), Value::String(code.clone()));

    let Some(email) = customer["email"].as_str().map(str::to_string) else {
        // Loyal, but nobody to write to: enrich the order, send no email.
        return Ok(reply::ok_json(&order));
    };
    let email_request = json!({
        "kind": "email",
        "to": email,
        "template": "loyalty-discount",
        "code": code,
        "customerId": customer_id,
        "orderId": order.get("orderId").cloned().unwrap_or(Value::Null),
    });
    Ok(reply::fanout(&[Value::Object(order), email_request]))
}

struct Settings {
    store_api: String,
    min_purchases: usize,
    window_days: i64,
}

impl Settings {
    fn from_config() -> Self {
        let number = |key: &str| config::get(key).and_then(|v| v.trim().parse().ok());
        Settings {
            store_api: config::get("store_api_url")
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_STORE_API.to_string()),
            min_purchases: number("min_purchases").unwrap_or(10) as usize,
            window_days: number("window_days").unwrap_or(30),
        }
    }
}

/// GET `<base>/customers/<id>/purchases` and decode the list.
async fn fetch_purchases(base: &str, customer_id: &str) -> Result<Vec<Purchase>, Error> {
    let uri = format!("{base}/customers/{}/purchases", url::encode(customer_id));
    let request = Request::get(uri)
        .header("accept", "application/json")
        .body(Body::empty())?;
    let mut response = Client::new().send(request).await?;
    let status = response.status();
    if !status.is_success() {
        let text = response.body_mut().str_contents().await.unwrap_or("");
        let text: String = text.chars().take(200).collect();
        return Err(Error::msg(format!("answered {status}: {text}")));
    }
    response.body_mut().json().await
}

/// Purchases in the window `[now - days, now]`. A purchase whose time cannot be read
/// does not count.
fn count_recent(purchases: &[Purchase], now: i64, days: i64) -> usize {
    let since = now - days * time::DAY;
    purchases
        .iter()
        .filter_map(|p| time::parse_rfc3339(&p.at))
        .filter(|at| (since..=now).contains(at))
        .count()
}

/// `LOYAL-` and 8 hex digits of a FNV-1a hash of customer id and event id: the same
/// event always gets the same code. Not a secret: a shop that must not accept guessed
/// codes registers each code with its discount service (another step) and checks it.
fn discount_code(customer_id: &str, salt: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer_id.bytes().chain([0]).chain(salt.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("LOYAL-{:08X}", (hash >> 32) as u32 ^ hash as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_window_only() {
        let now = 1_700_000_000;
        let at = |days: i64| Purchase {
            at: time::format_rfc3339(now - days * time::DAY),
        };
        let ps = vec![
            at(1),
            at(29),
            at(31),
            at(-1),
            Purchase {
                at: "yesterday".into(),
            },
        ];
        assert_eq!(count_recent(&ps, now, 30), 2);
    }

    #[test]
    fn codes_are_stable_and_distinct() {
        assert_eq!(
            discount_code("c-loyal", "evt-1"),
            discount_code("c-loyal", "evt-1")
        );
        assert_ne!(
            discount_code("c-loyal", "evt-1"),
            discount_code("c-loyal", "evt-2")
        );
        assert_ne!(discount_code("c-a", "b"), discount_code("c-ab", ""));
        assert!(discount_code("c", "e").starts_with("LOYAL-"));
        assert_eq!(discount_code("c", "e").len(), 14);
    }
}
