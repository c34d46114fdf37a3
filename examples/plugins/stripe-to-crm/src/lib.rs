//! `stripe-to-crm`: turns a Stripe `charge.succeeded` webhook into a CRM contact.
//!
//! A bridge step. The bridge verifies Stripe's signature before the event gets here;
//! this plugin only reshapes it:
//!
//! ```text
//! {"id": "evt_1", "type": "charge.succeeded",
//!  "data": {"object": {"id": "ch_1", "amount": 2000, "currency": "usd",
//!                      "customer": "cus_1",
//!                      "billing_details": {"email": "ada@example.com", "name": "Ada"}}}}
//! ->
//! {"email": "ada@example.com", "name": "Ada", "lifetimeValueCents": 2000,
//!  "currency": "usd", "lastChargeId": "ch_1", "stripeCustomerId": "cus_1",
//!  "stripeEventId": "evt_1", "source": "stripe"}
//! ```
//!
//! * other event types: 204, the event is filtered out;
//! * a body that is not JSON: 400; a charge with no email: 422 (the step fails).
//!
//! The lifetime value is the sum of the customer's charges seen so far, kept in the
//! plugin's keyvalue bucket. Steps run at least once, so the same charge can arrive
//! twice: the ledger remembers recent charge ids and counts each charge once.

use causeway_plugin_kit::{kv, reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wstd::http::{Body, Error, Request, Response, StatusCode};

/// How many recent charge ids a customer's ledger remembers for deduplication.
/// Redeliveries come minutes apart, not after hundreds of newer charges.
const RECENT_CHARGES: usize = 100;

#[wstd::http_server]
async fn main(mut request: Request<Body>) -> Result<Response<Body>, Error> {
    let bytes = request.body_mut().contents().await?;
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => {
            let msg = format!("invalid JSON: {e}");
            return Ok(reply::error(StatusCode::BAD_REQUEST, &msg));
        }
    };
    let event: StripeEvent = match serde_json::from_value(value) {
        Ok(event) => event,
        Err(e) => {
            let msg = format!("not a Stripe event: {e}");
            return Ok(reply::error(StatusCode::BAD_REQUEST, &msg));
        }
    };
    if event.kind != "charge.succeeded" {
        // Not ours: drop the event instead of failing the step.
        return Ok(reply::filtered());
    }
    let charge = match Charge::from_event(&event) {
        Ok(charge) => charge,
        Err(msg) => return Ok(reply::error(StatusCode::UNPROCESSABLE_ENTITY, msg)),
    };
    // A keyvalue failure is a 500: the step fails and the host retries it later.
    let lifetime = match record_charge(&charge) {
        Ok(total) => total,
        Err(e) => {
            return Ok(reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
            ));
        }
    };
    Ok(reply::ok_json(&Contact::new(&event, &charge, lifetime)))
}

/// The parts of a Stripe event this plugin reads.
#[derive(Deserialize)]
struct StripeEvent {
    #[serde(default)]
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

/// The fields of a charge object we need.
struct Charge {
    id: String,
    amount: i64,
    currency: String,
    customer: Option<String>,
    email: String,
    name: Option<String>,
}

impl Charge {
    fn from_event(event: &StripeEvent) -> Result<Self, &'static str> {
        let obj = &event.data["object"];
        let id = obj["id"].as_str().ok_or("data.object.id is missing")?;
        let amount = obj["amount"]
            .as_i64()
            .ok_or("data.object.amount is missing")?;
        let billing = &obj["billing_details"];
        // Stripe leaves billing_details.email null for many payment methods; the
        // receipt email is the usual fallback.
        let email = billing["email"]
            .as_str()
            .or_else(|| obj["receipt_email"].as_str())
            .filter(|e| !e.is_empty())
            .ok_or("the charge has no billing or receipt email")?;
        Ok(Charge {
            id: id.to_string(),
            amount,
            currency: obj["currency"].as_str().unwrap_or("usd").to_string(),
            customer: obj["customer"].as_str().map(str::to_string),
            email: email.to_string(),
            name: billing["name"].as_str().map(str::to_string),
        })
    }

    /// Guest checkouts have no Stripe customer: fall back to the email.
    fn ledger_key(&self) -> String {
        match &self.customer {
            Some(customer) => format!("ltv/{customer}"),
            None => format!("ltv/email/{}", self.email.to_ascii_lowercase()),
        }
    }
}

/// A customer's running total, stored as JSON under `ltv/<customer>`.
#[derive(Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Ledger {
    total_cents: i64,
    /// The most recent charge ids, oldest first, to count a redelivered charge once.
    recent_charges: Vec<String>,
}

impl Ledger {
    /// Adds a charge unless it was already counted; returns whether it was new.
    fn add(&mut self, charge_id: &str, amount: i64) -> bool {
        if self.recent_charges.iter().any(|c| c == charge_id) {
            return false;
        }
        self.total_cents += amount;
        self.recent_charges.push(charge_id.to_string());
        let excess = self.recent_charges.len().saturating_sub(RECENT_CHARGES);
        self.recent_charges.drain(..excess);
        true
    }
}

/// Adds the charge to the customer's ledger (once) and returns the lifetime total.
fn record_charge(charge: &Charge) -> Result<i64, kv::Error> {
    let bucket = kv::Bucket::open()?;
    let key = charge.ledger_key();
    let mut ledger: Ledger = bucket.get_json(&key)?.unwrap_or_default();
    if ledger.add(&charge.id, charge.amount) {
        bucket.set_json(&key, &ledger)?;
    } else {
        println!("charge {} already counted, not adding it again", charge.id);
    }
    Ok(ledger.total_cents)
}

/// The CRM contact payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact<'a> {
    email: &'a str,
    name: Option<&'a str>,
    lifetime_value_cents: i64,
    currency: &'a str,
    last_charge_id: &'a str,
    last_charge_cents: i64,
    stripe_customer_id: Option<&'a str>,
    stripe_event_id: &'a str,
    source: &'static str,
}

impl<'a> Contact<'a> {
    fn new(event: &'a StripeEvent, charge: &'a Charge, lifetime: i64) -> Self {
        Contact {
            email: &charge.email,
            name: charge.name.as_deref(),
            lifetime_value_cents: lifetime,
            currency: &charge.currency,
            last_charge_id: &charge.id,
            last_charge_cents: charge.amount,
            stripe_customer_id: charge.customer.as_deref(),
            stripe_event_id: &event.id,
            source: "stripe",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> StripeEvent {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_a_charge() {
        let e = event(
            r#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"id":"ch_1",
            "amount":2000,"currency":"eur","customer":null,"receipt_email":"a@x.io",
            "billing_details":{"email":null,"name":"Ada"}}}}"#,
        );
        let c = Charge::from_event(&e).unwrap();
        assert_eq!(
            (c.id.as_str(), c.amount, c.email.as_str()),
            ("ch_1", 2000, "a@x.io")
        );
        assert_eq!(c.ledger_key(), "ltv/email/a@x.io");
        let contact = serde_json::to_value(Contact::new(&e, &c, 2000)).unwrap();
        assert_eq!(contact["lifetimeValueCents"], 2000);
        assert_eq!(contact["source"], "stripe");
        assert_eq!(contact["currency"], "eur");
    }

    #[test]
    fn ledger_counts_each_charge_once() {
        let mut l = Ledger::default();
        assert!(l.add("ch_1", 100));
        assert!(!l.add("ch_1", 100));
        assert!(l.add("ch_2", 50));
        assert_eq!(l.total_cents, 150);
    }
}
