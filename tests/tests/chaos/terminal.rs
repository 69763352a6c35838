//! A POS terminal as the issue describes it: it sends purchases (and some refunds and
//! redemptions) through the typed client, and retries each command with the same
//! `Idempotency-Key` until it gets a definitive answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loyalty_client::{Client, MemberWrite, RawResponse};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// How long a terminal waits between attempts. Shorter than the API's `Retry-After: 1`, so the
/// waits measured are the service's, not the terminal's.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// A command and the answer the terminal settled on.
#[derive(Debug, Clone)]
pub struct Answered {
    pub path: String,
    pub key: String,
    pub body: Value,
    /// When the first attempt was sent and the definitive answer received.
    pub started: Instant,
    pub answered: Instant,
    pub attempts: u32,
    pub status: u16,
    /// The body exactly as received.
    pub text: String,
    /// The typed answer of an acknowledged command.
    pub write: Option<MemberWrite>,
}

impl Answered {
    pub fn acknowledged(&self) -> bool {
        self.write.is_some()
    }
}

/// Whether `answer` settles the command: a success, or a refusal that a retry would not change.
fn definitive(answer: &RawResponse) -> bool {
    match answer.status {
        200..=299 => true,
        409 => answer.error_code() != Some("request_in_progress"),
        429 => false,
        400..=499 => true,
        _ => false,
    }
}

/// Sends `body` to `path` under `key` until a definitive answer.
pub async fn send_until_answered(client: &Client, path: String, key: String, body: Value) -> Answered {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Ok(answer) = client.send(Method::POST, &path, Some(&key), Some(&body)).await {
            if definitive(&answer) {
                let status = answer.status;
                let text = answer.text.clone();
                let write = if answer.is_success() {
                    Some(
                        answer
                            .into_typed::<MemberWrite>()
                            .unwrap_or_else(|error| panic!("{path} {key}: {error}")),
                    )
                } else {
                    None
                };
                return Answered {
                    path,
                    key,
                    body,
                    started,
                    answered: Instant::now(),
                    attempts,
                    status,
                    text,
                    write,
                };
            }
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// One terminal: its members, its client, its answers.
pub struct Terminal {
    pub id: usize,
    pub client: Client,
    pub org: String,
    pub members: Vec<Uuid>,
}

impl Terminal {
    /// Sends commands until `stop`; the command in progress is always finished.
    pub async fn run(self, stop: Arc<AtomicBool>, seed: u64) -> Vec<Answered> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut answers = Vec::new();
        // Acknowledged purchases not refunded yet: (member, transaction id, amount).
        let mut refundable: Vec<(Uuid, String, i64)> = Vec::new();
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let member = self.members[rng.random_range(0..self.members.len())];
            let key = format!("till-{}:{n}", self.id);
            let roll = rng.random_range(0..100);
            let (action, member, body) = if roll < 10 && !refundable.is_empty() {
                let (owner, transaction, amount) =
                    refundable.swap_remove(rng.random_range(0..refundable.len()));
                let body = json!({
                    "refund_id": format!("R-{}-{n}", self.id),
                    "transaction_id": transaction,
                    "amount_minor": amount / 2,
                });
                ("refunds", owner, body)
            } else if roll < 20 {
                let body = json!({"redemption_id": format!("D-{}-{n}", self.id), "reward_id": "coffee"});
                ("redemptions", member, body)
            } else {
                let body = json!({
                    "transaction_id": format!("T-{}-{n}", self.id),
                    "location_id": "store-1",
                    "amount_minor": rng.random_range(100..20_000),
                    "currency": "EUR",
                    "occurred_at": chrono::Utc::now(),
                });
                ("purchases", member, body)
            };
            let path = format!("/v1/orgs/{}/members/{member}/{action}", self.org);
            let answer = send_until_answered(&self.client, path, key, body).await;
            if action == "purchases" && answer.acknowledged() {
                let transaction = answer.body["transaction_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let amount = answer.body["amount_minor"].as_i64().unwrap_or_default();
                refundable.push((member, transaction, amount));
            }
            answers.push(answer);
        }
        answers
    }
}
