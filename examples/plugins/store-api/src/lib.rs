//! `store-api`: a small private service other plugins call over `http://store-api.internal`.
//!
//! It stands in for a shop's order database in the loyalty scenario:
//!
//! * `GET  .../customers/<id>/purchases`: the customer's purchases, newest first,
//!   `[{"id": "p-1", "at": "2025-01-31T10:00:00Z", "amount": 1500}]`;
//! * `POST .../customers/<id>/purchases`: adds one purchase or an array of them
//!   (`{"id"?, "at"?, "amount"}`; `id` defaults to one derived from the event id or the
//!   time, `at` to now) and answers 201 with the customer's purchases;
//! * `DELETE .../customers/<id>/purchases`: forgets the purchases added with POST.
//!
//! Only the path's end is matched, so the service works under any prefix.
//!
//! Purchases come from a built-in fixture, computed from the current time (read from
//! `wasi:clocks/wall-clock`) so it always looks recent, plus what was POSTed, kept in
//! the plugin's keyvalue bucket under `purchases/<id>`:
//!
//! | customer   | fixture purchases                                        |
//! |------------|----------------------------------------------------------|
//! | `c-loyal`  | 12 in the last 30 days, 3 older                          |
//! | `c-new`    | 2 in the last 30 days                                    |
//! | `c-lapsed` | 15, all older than 30 days                               |
//! | any other  | none                                                     |
//!
//! POST is idempotent per purchase id: posting the same id again replaces it.

use causeway_plugin_kit::{headers, kv, reply, time, url};
use serde::{Deserialize, Serialize};
use wstd::http::{Body, Error, Method, Request, Response, StatusCode};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Purchase {
    id: String,
    /// RFC 3339, UTC.
    at: String,
    /// Minor units (cents).
    amount: i64,
}

/// A purchase as a client may POST it: everything but the amount is optional.
#[derive(Deserialize)]
struct NewPurchase {
    id: Option<String>,
    at: Option<String>,
    amount: i64,
}

/// One purchase or several.
#[derive(Deserialize)]
#[serde(untagged)]
enum NewPurchases {
    One(NewPurchase),
    Many(Vec<NewPurchase>),
}

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let Some(customer) = customer_in_path(request.uri().path()) else {
        return Ok(reply::error(
            StatusCode::NOT_FOUND,
            "no such route: use /customers/<id>/purchases",
        ));
    };
    let now = time::now_unix();
    let result = match *request.method() {
        Method::GET => list(&customer, now).map(|p| reply::ok_json(&p)),
        Method::POST => {
            let event_id = headers::event_id(&request).map(str::to_string);
            let body = request.body_mut().contents().await?;
            let new = match serde_json::from_slice::<NewPurchases>(body) {
                Ok(NewPurchases::One(p)) => vec![p],
                Ok(NewPurchases::Many(ps)) => ps,
                Err(e) => {
                    let msg = format!(
                        "expected {{\"amount\": <cents>, \"id\"?, \"at\"?}} or an array of them: {e}"
                    );
                    return Ok(reply::error(StatusCode::BAD_REQUEST, &msg));
                }
            };
            match add(&customer, new, event_id.as_deref(), now) {
                Ok(Ok(purchases)) => Ok(reply::json(StatusCode::CREATED, &purchases)),
                Ok(Err(msg)) => return Ok(reply::error(StatusCode::BAD_REQUEST, &msg)),
                Err(e) => Err(e),
            }
        }
        Method::DELETE => kv::Bucket::open()
            .and_then(|b| b.delete(&seed_key(&customer)))
            .map(|()| reply::empty(StatusCode::NO_CONTENT)),
        _ => Ok(reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET, POST or DELETE",
        )),
    };
    Ok(result.unwrap_or_else(|e| reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())))
}

/// The customer id in a path ending in `/customers/<id>/purchases`.
fn customer_in_path(path: &str) -> Option<String> {
    let rest = path.trim_end_matches('/').strip_suffix("/purchases")?;
    let (prefix, id) = rest.rsplit_once('/')?;
    if !prefix.ends_with("/customers") && prefix != "customers" || id.is_empty() {
        return None;
    }
    Some(url::decode(id, false))
}

fn seed_key(customer: &str) -> String {
    format!("purchases/{customer}")
}

/// Fixture and seeded purchases, newest first.
fn list(customer: &str, now: i64) -> Result<Vec<Purchase>, kv::Error> {
    let seeded = kv::Bucket::open()?
        .get_json(&seed_key(customer))?
        .unwrap_or_default();
    Ok(list_from(customer, seeded, now))
}

/// Stores new purchases (replacing any with the same id) and returns the full list.
/// The inner `Err` is a client error.
fn add(
    customer: &str,
    new: Vec<NewPurchase>,
    event_id: Option<&str>,
    now: i64,
) -> Result<Result<Vec<Purchase>, String>, kv::Error> {
    let bucket = kv::Bucket::open()?;
    let key = seed_key(customer);
    let mut seeded: Vec<Purchase> = bucket.get_json(&key)?.unwrap_or_default();
    for (i, p) in new.into_iter().enumerate() {
        let at = match p.at {
            None => time::format_rfc3339(now),
            // Normalise to UTC so the list sorts by time.
            Some(at) => match time::parse_rfc3339(&at) {
                Some(t) => time::format_rfc3339(t),
                None => return Ok(Err(format!("\"at\" is not an RFC 3339 time: {at:?}"))),
            },
        };
        // Without an explicit id, derive one from the event id, so that a repeated
        // call (same event) replaces the purchase instead of adding it twice.
        let id = p.id.unwrap_or_else(|| match event_id {
            Some(ev) => format!("p-{ev}-{i}"),
            None => format!("p-{now}-{i}"),
        });
        seeded.retain(|s| s.id != id);
        seeded.push(Purchase {
            id,
            at,
            amount: p.amount,
        });
    }
    bucket.set_json(&key, &seeded)?;
    Ok(Ok(list_from(customer, seeded, now)))
}

/// Merges the fixture with the seeded purchases, newest first.
fn list_from(customer: &str, seeded: Vec<Purchase>, now: i64) -> Vec<Purchase> {
    let mut all = fixture(customer, now);
    // A seeded purchase replaces a fixture purchase with the same id.
    all.retain(|p| !seeded.iter().any(|s| s.id == p.id));
    all.extend(seeded);
    // RFC 3339 UTC strings of one format sort like the times they stand for.
    all.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
    all
}

/// The built-in purchases of the demo customers, `days ago` relative to the start of
/// the current hour (so a listing is stable for an hour, and always recent).
fn fixture(customer: &str, now: i64) -> Vec<Purchase> {
    let days_ago: Vec<i64> = match customer {
        // 12 purchases 1, 3, 5, … 23 days ago, then 3 older ones.
        "c-loyal" => (0..12).map(|i| 1 + 2 * i).chain([45, 60, 90]).collect(),
        "c-new" => vec![3, 10],
        // A good customer who stopped buying: nothing in the last 30 days.
        "c-lapsed" => (0..15).map(|i| 40 + 3 * i).collect(),
        _ => Vec::new(),
    };
    let anchor = now - now.rem_euclid(3600);
    days_ago
        .iter()
        .enumerate()
        .map(|(i, days)| Purchase {
            id: format!("p-{customer}-{}", i + 1),
            at: time::format_rfc3339(anchor - days * time::DAY),
            amount: 1500 + 250 * i as i64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            customer_in_path("/customers/c-loyal/purchases").as_deref(),
            Some("c-loyal")
        );
        assert_eq!(
            customer_in_path("/api/customers/c%20x/purchases/").as_deref(),
            Some("c x")
        );
        assert_eq!(
            customer_in_path("customers/a/purchases").as_deref(),
            Some("a")
        );
        assert_eq!(customer_in_path("/customers//purchases"), None);
        assert_eq!(customer_in_path("/orders/a/purchases"), None);
        assert_eq!(customer_in_path("/"), None);
    }

    #[test]
    fn fixture_counts() {
        let now = 1_700_000_000;
        let recent = |c: &str| {
            fixture(c, now)
                .iter()
                .filter(|p| time::parse_rfc3339(&p.at).unwrap() >= now - 30 * time::DAY)
                .count()
        };
        assert_eq!((recent("c-loyal"), fixture("c-loyal", now).len()), (12, 15));
        assert_eq!(recent("c-new"), 2);
        assert_eq!(
            (recent("c-lapsed"), fixture("c-lapsed", now).len()),
            (0, 15)
        );
        assert!(fixture("nobody", now).is_empty());
    }

    #[test]
    fn seeded_replaces_fixture_by_id() {
        let now = 1_700_000_000;
        let seeded = vec![Purchase {
            id: "p-c-new-1".into(),
            at: time::format_rfc3339(now),
            amount: 1,
        }];
        let all = list_from("c-new", seeded, now);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].amount, 1);
    }
}
