//! What the chaos test checks once the faults stop, each as a user would: every acknowledged
//! command is in the event store exactly as answered and nothing else is, replays are byte for
//! byte the first answer, the stream holds exactly the store's events, the read models agree.

use std::collections::{BTreeMap, BTreeSet};

use loyalty_client::Client;
use reqwest::Method;
use serde_json::Value;
use sqlx::PgPool;

use crate::terminal::Answered;

/// A member event: (aggregate id, sequence) → (type, fields).
type Events = BTreeMap<(String, u64), (String, Value)>;

/// The member events of the store, with the fields as an answer shows them (the inner object
/// of the externally tagged payload).
async fn store_events(pool: &PgPool) -> Events {
    let rows: Vec<(String, i64, String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, sequence, event_type, payload::jsonb FROM events WHERE aggregate_type = 'member'",
    )
    .fetch_all(pool)
    .await
    .expect("reading the event store");
    rows.into_iter()
        .map(|(aggregate, sequence, event_type, payload)| {
            let fields = payload.get(&event_type).cloned().unwrap_or(payload);
            ((aggregate, sequence as u64), (event_type, fields))
        })
        .collect()
}

/// No acknowledged command lost, none doubled, nothing in the store that no answer reported.
/// Returns the number of events checked.
pub async fn answers_match_the_store(pool: &PgPool, org: &str, answers: &[Answered]) -> usize {
    let mut answered = Events::new();
    for answer in answers {
        let Some(write) = &answer.write else { continue };
        for event in &write.events {
            let key = (format!("{org}/{}", write.member_id), event.sequence);
            let value = (event.event_type.clone(), event.payload.clone());
            if let Some(earlier) = answered.insert(key.clone(), value.clone()) {
                assert_eq!(earlier, value, "two answers report different events at {key:?}");
                panic!("two answers ({}) report the same event {key:?}", answer.key);
            }
        }
    }
    let stored = store_events(pool).await;
    let lost: Vec<_> = answered.keys().filter(|key| !stored.contains_key(*key)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged events missing from the store: {lost:?}"
    );
    let unanswered: Vec<_> = stored.keys().filter(|key| !answered.contains_key(*key)).collect();
    assert!(
        unanswered.is_empty(),
        "events in the store that no answer reported (doubled or unacknowledged): {unanswered:?}"
    );
    for (key, value) in &answered {
        let (stored_type, stored_fields) = &stored[key];
        assert_eq!(
            (&value.0, &value.1),
            (stored_type, stored_fields),
            "the store's event {key:?} differs from the answer"
        );
    }
    let doubled: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload::jsonb #>> '{PurchaseRecorded,transaction_id}', count(*) FROM events \
         WHERE event_type = 'PurchaseRecorded' GROUP BY 1 HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await
    .expect("counting purchases");
    assert!(doubled.is_empty(), "purchases recorded twice: {doubled:?}");
    answered.len()
}

/// Each member's balance in the read model is the balance of its last acknowledged answer.
pub async fn balances_match_the_last_answers(pool: &PgPool, answers: &[Answered]) -> usize {
    let mut last: BTreeMap<uuid::Uuid, (u64, i64)> = BTreeMap::new();
    for answer in answers {
        let Some(write) = &answer.write else { continue };
        let Some(sequence) = write.last_sequence() else {
            continue;
        };
        let entry = last.entry(write.member_id).or_insert((0, 0));
        if sequence >= entry.0 {
            *entry = (sequence, write.balance);
        }
    }
    let projected: BTreeMap<uuid::Uuid, i64> =
        sqlx::query_as::<_, (uuid::Uuid, i64)>("SELECT member_id, balance FROM rm.member_balances")
            .fetch_all(pool)
            .await
            .expect("reading balances")
            .into_iter()
            .collect();
    for (member, (_, balance)) in &last {
        assert_eq!(
            projected.get(member),
            Some(balance),
            "member {member}: the read model's balance is not the last answer's"
        );
    }
    last.len()
}

/// Every acknowledged command sent again with its key is answered byte for byte as the first
/// time (at most `limit` of them, spread over the run). Returns how many were re-sent.
pub async fn replays_are_identical(client: &Client, answers: &[Answered], limit: usize) -> usize {
    let acknowledged: Vec<&Answered> = answers.iter().filter(|a| a.acknowledged()).collect();
    let step = acknowledged.len().div_ceil(limit.max(1)).max(1);
    let mut sent = 0;
    for answer in acknowledged.into_iter().step_by(step) {
        let replay = client
            .send(Method::POST, &answer.path, Some(&answer.key), Some(&answer.body))
            .await
            .expect("a replay");
        assert_eq!(
            (replay.status, replay.text.as_str()),
            (answer.status, answer.text.as_str()),
            "{} {} answered differently the second time",
            answer.path,
            answer.key
        );
        sent += 1;
    }
    sent
}

/// The `Nats-Msg-Id`s of the stream are exactly the store's events, each once. Returns how many.
pub async fn stream_equals_store(pool: &PgPool, nats: &async_nats::Client, stream: &str) -> usize {
    let expected: BTreeSet<String> =
        sqlx::query_scalar("SELECT aggregate_type || ':' || aggregate_id || ':' || sequence FROM events")
            .fetch_all(pool)
            .await
            .expect("reading event ids")
            .into_iter()
            .collect();
    let jetstream = async_nats::jetstream::new(nats.clone());
    let ids: Vec<String> = loyalty_tests::stream::read_stream(&jetstream, stream)
        .await
        .into_iter()
        .map(|message| message.msg_id)
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "a message appears twice in the stream");
    let missing: Vec<_> = expected.difference(&unique).take(10).collect();
    let extra: Vec<_> = unique.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "stream and store differ: missing from the stream {missing:?}, not in the store {extra:?}"
    );
    ids.len()
}
