//! The one event codec: a stored event (a row of `events`, or the stream message carrying it)
//! back into a typed domain event. Every reader decodes through here, so the check of
//! `event_version` and the upcasters that bring an old payload to today's shape live in this one
//! place.
//!
//! Every event type is at version [`CURRENT_VERSION`] except `PurchaseRecorded`, at version 2
//! since it records the basket lines and the breakdown of its points (SPEC §9); its upcaster
//! from version 1 derives the breakdown a version-1 purchase had (no promotion, no cap). A
//! change of an event's shape bumps its version (the `DomainEvent::event_version` of the
//! event type, and [`current_version`]) and registers an upcaster from the old version in
//! [`upcasters`].

use std::str::FromStr as _;
use std::sync::OnceLock;

use cqrs_es::persist::{EventUpcaster, SemanticVersion, SerializedEvent};
use cqrs_es::DomainEvent;
use serde::de::DeserializeOwned;
use serde_json::Value;

use cqrs_es::persist::SemanticVersionEventUpcaster;

use crate::ids::{BadMemberAggregateId, MemberKey};
use crate::member::events::PURCHASE_RECORDED_VERSION;
use crate::member::{Member, MemberEvent};
use crate::program::{Program, ProgramEvent};
use crate::wire::StoredEvent;

/// The version every event type is written at today, unless [`current_version`] names
/// another.
pub const CURRENT_VERSION: &str = "1";

/// The version `event_type` is written at today.
pub fn current_version(event_type: &str) -> &'static str {
    match event_type {
        "PurchaseRecorded" => PURCHASE_RECORDED_VERSION,
        _ => CURRENT_VERSION,
    }
}

/// Why a stored event cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error(
        "unsupported event version '{version}' of {event_type} (this projector reads version {current})"
    )]
    UnsupportedVersion {
        event_type: String,
        version: String,
        current: &'static str,
    },
    #[error("payload is not a {aggregate_type} event: {error}")]
    BadPayload { aggregate_type: String, error: String },
    #[error("event_type '{declared}' does not match the payload ({actual})")]
    TypeMismatch { declared: String, actual: String },
    #[error("{0}")]
    Invalid(String),
}

impl From<BadMemberAggregateId> for CodecError {
    fn from(error: BadMemberAggregateId) -> Self {
        CodecError::Invalid(error.to_string())
    }
}

/// An event type the codec can decode: the events of one aggregate.
pub trait Decodable: DomainEvent + DeserializeOwned {
    /// The `aggregate_type` of the events table (`Aggregate::TYPE`).
    const AGGREGATE_TYPE: &'static str;

    /// The variant's name, as stored in `event_type`.
    fn type_name(&self) -> &'static str;
}

impl Decodable for MemberEvent {
    const AGGREGATE_TYPE: &'static str = <Member as cqrs_es::Aggregate>::TYPE;

    fn type_name(&self) -> &'static str {
        MemberEvent::type_name(self)
    }
}

impl Decodable for ProgramEvent {
    const AGGREGATE_TYPE: &'static str = <Program as cqrs_es::Aggregate>::TYPE;

    fn type_name(&self) -> &'static str {
        ProgramEvent::type_name(self)
    }
}

/// A decoded domain event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Member(MemberKey, MemberEvent),
    /// The org id and the event.
    Program(String, ProgramEvent),
    /// An aggregate type no reader is built from.
    Other,
}

/// The upcasters of the platform, applied in order (cqrs-es semantics: each one whose
/// `can_upcast(event_type, event_version)` holds rewrites the payload and sets the version).
pub type Upcasters = Vec<Box<dyn EventUpcaster>>;

/// The registry of upcasters. Add one here, e.g.
/// `SemanticVersionEventUpcaster::new("PointsAdjusted", "2", Box::new(f))`, together with the
/// bump of that event's version.
pub fn upcasters() -> &'static [Box<dyn EventUpcaster>] {
    static REGISTRY: OnceLock<Upcasters> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        vec![Box::new(SemanticVersionEventUpcaster::new(
            "PurchaseRecorded",
            PURCHASE_RECORDED_VERSION,
            Box::new(purchase_recorded_v1_to_v2),
        ))]
    })
}

/// `PurchaseRecorded` 1 → 2: a version-1 purchase earned its tier points and nothing else, so
/// its breakdown is `{base: base_points, tier_points: points_earned, promotions: [],
/// cap_cut: 0, total: points_earned}`; it had no basket lines.
fn purchase_recorded_v1_to_v2(mut payload: Value) -> Value {
    if let Some(body) = payload.get_mut("PurchaseRecorded").and_then(Value::as_object_mut) {
        if !body.contains_key("breakdown") {
            let base = body.get("base_points").cloned().unwrap_or(Value::Null);
            let points = body.get("points_earned").cloned().unwrap_or(Value::Null);
            body.insert(
                "breakdown".into(),
                serde_json::json!({
                    "base": base,
                    "tier_points": points,
                    "promotions": [],
                    "cap_cut": 0,
                    "total": points,
                }),
            );
        }
    }
    payload
}

/// Decodes with a given set of upcasters; the free functions of this module use
/// [`upcasters`].
pub struct Codec<'a> {
    upcasters: &'a [Box<dyn EventUpcaster>],
}

impl Default for Codec<'static> {
    fn default() -> Self {
        Codec {
            upcasters: upcasters(),
        }
    }
}

impl<'a> Codec<'a> {
    pub fn with_upcasters(upcasters: &'a [Box<dyn EventUpcaster>]) -> Self {
        Codec { upcasters }
    }

    /// Brings `payload` of `event_type` at `event_version` to the current version.
    fn upcast(&self, event_type: &str, event_version: &str, payload: Value) -> Result<Value, CodecError> {
        let mut event = SerializedEvent::new(
            String::new(),
            0,
            String::new(),
            event_type.to_owned(),
            event_version.to_owned(),
            payload,
            Value::Null,
        );
        let mut upcast = false;
        for upcaster in self.upcasters {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                event = upcaster.upcast(event);
                upcast = true;
            }
        }
        // A stored version must be exactly the current one; an upcaster states its target as a
        // semantic version ("1.0.0"), which only has to mean the same.
        let current = current_version(event_type);
        let is_current = if upcast {
            SemanticVersion::from_str(&event.event_version) == SemanticVersion::from_str(current)
        } else {
            event.event_version == current
        };
        if !is_current {
            return Err(CodecError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version: event_version.to_owned(),
                current,
            });
        }
        Ok(event.payload)
    }

    /// Decodes the payload of one event of `E`'s aggregate, checking that it is the type the
    /// row declares.
    pub fn decode_payload<E: Decodable>(
        &self,
        event_type: &str,
        event_version: &str,
        payload: Value,
    ) -> Result<E, CodecError> {
        let payload = self.upcast(event_type, event_version, payload)?;
        parse(event_type, payload)
    }

    /// Decodes a stored event of any aggregate type.
    pub fn decode(&self, event: &StoredEvent) -> Result<Decoded, CodecError> {
        let payload = || event.payload.clone();
        match event.aggregate_type.as_str() {
            MemberEvent::AGGREGATE_TYPE => {
                // Version first, then the key: the order in which a parked event is explained.
                let payload = self.upcast(&event.event_type, &event.event_version, payload())?;
                let key = MemberKey::parse(&event.aggregate_id)?;
                Ok(Decoded::Member(key, parse(&event.event_type, payload)?))
            }
            ProgramEvent::AGGREGATE_TYPE => {
                let decoded = self.decode_payload(&event.event_type, &event.event_version, payload())?;
                Ok(Decoded::Program(event.aggregate_id.clone(), decoded))
            }
            _ => {
                // Unknown aggregates are skipped, but still only at a version this code reads.
                self.upcast(&event.event_type, &event.event_version, Value::Null)?;
                Ok(Decoded::Other)
            }
        }
    }
}

/// A payload at the current version as an `E`, checked to be the declared `event_type`.
fn parse<E: Decodable>(event_type: &str, payload: Value) -> Result<E, CodecError> {
    let event: E = serde_json::from_value(payload).map_err(|error| CodecError::BadPayload {
        aggregate_type: E::AGGREGATE_TYPE.to_owned(),
        error: error.to_string(),
    })?;
    if event.type_name() != event_type {
        return Err(CodecError::TypeMismatch {
            declared: event_type.to_owned(),
            actual: event.type_name().to_owned(),
        });
    }
    Ok(event)
}

/// Decodes a stored event (see [`Codec::decode`]).
pub fn decode(event: &StoredEvent) -> Result<Decoded, CodecError> {
    Codec::default().decode(event)
}

/// Decodes a member event from its `event_type`, `event_version` and payload columns.
pub fn decode_member(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<MemberEvent, CodecError> {
    Codec::default().decode_payload(event_type, event_version, payload)
}

/// Decodes a stored event whose payload is given as its JSON text (`event.payload` is not read),
/// with the result [`decode`] gives for the event holding that payload: a member event at the
/// current version is read straight into the typed event; anything else, or anything that path
/// refuses, goes through `decode` itself, so its errors are the same.
pub fn decode_text(event: &StoredEvent, payload: &str) -> Result<Decoded, CodecError> {
    if event.aggregate_type == MemberEvent::AGGREGATE_TYPE
        && event.event_version == current_version(&event.event_type)
    {
        if let (Ok(key), Ok(member)) = (
            MemberKey::parse(&event.aggregate_id),
            decode_member_text(&event.event_type, &event.event_version, payload),
        ) {
            return Ok(Decoded::Member(key, member));
        }
    }
    let payload: Value = serde_json::from_str(payload).map_err(|error| CodecError::BadPayload {
        aggregate_type: event.aggregate_type.clone(),
        error: error.to_string(),
    })?;
    decode(&StoredEvent {
        payload,
        ..event.clone()
    })
}

/// Decodes a member event from its `event_type`, `event_version` and the payload's JSON text.
/// A payload at the current version is read straight into the typed event (no intermediate
/// `Value`: what a replay of millions of events spends most on); an older one is upcast first.
pub fn decode_member_text(
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<MemberEvent, CodecError> {
    if event_version != current_version(event_type) {
        let value: Value = serde_json::from_str(payload).map_err(|error| CodecError::BadPayload {
            aggregate_type: MemberEvent::AGGREGATE_TYPE.to_owned(),
            error: error.to_string(),
        })?;
        return decode_member(event_type, event_version, value);
    }
    let event: MemberEvent = serde_json::from_str(payload).map_err(|error| CodecError::BadPayload {
        aggregate_type: MemberEvent::AGGREGATE_TYPE.to_owned(),
        error: error.to_string(),
    })?;
    if event.type_name() != event_type {
        return Err(CodecError::TypeMismatch {
            declared: event_type.to_owned(),
            actual: event.type_name().to_owned(),
        });
    }
    Ok(event)
}

/// Decodes a program event from its `event_type`, `event_version` and payload columns.
pub fn decode_program(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<ProgramEvent, CodecError> {
    Codec::default().decode_payload(event_type, event_version, payload)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};
    use cqrs_es::persist::SemanticVersionEventUpcaster;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn stored(
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        version: &str,
        payload: Value,
    ) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::nil(),
            global_position: 1,
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
            sequence: 1,
            event_type: event_type.into(),
            event_version: version.into(),
            payload,
            metadata: json!({}),
            committed_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    fn expired_payload() -> Value {
        json!({"PointsExpired": {"as_of": "2024-01-01T00:00:00Z", "points": 5, "balance_after": 0}})
    }

    fn member_id() -> String {
        format!("acme/{}", Uuid::nil())
    }

    #[test]
    fn decodes_a_member_event() {
        let event = stored("member", &member_id(), "PointsExpired", "1", expired_payload());
        let Decoded::Member(key, MemberEvent::PointsExpired { points, .. }) = decode(&event).unwrap() else {
            panic!("not a PointsExpired member event");
        };
        assert_eq!((key.org_id.as_str(), points), ("acme", 5));
    }

    #[test]
    fn refuses_unknown_versions_mismatched_types_and_bad_payloads() {
        let event = stored("member", &member_id(), "PointsExpired", "2", expired_payload());
        assert_eq!(
            decode(&event).unwrap_err().to_string(),
            "unsupported event version '2' of PointsExpired (this projector reads version 1)"
        );
        let event = stored("member", &member_id(), "PointsAdjusted", "1", expired_payload());
        assert_eq!(
            decode(&event).unwrap_err(),
            CodecError::TypeMismatch {
                declared: "PointsAdjusted".into(),
                actual: "PointsExpired".into()
            }
        );
        let event = stored("member", &member_id(), "PointsExpired", "1", json!({"Nope": {}}));
        assert!(decode(&event)
            .unwrap_err()
            .to_string()
            .starts_with("payload is not a member event"));
        let event = stored("member", "acme", "PointsExpired", "1", expired_payload());
        assert_eq!(
            decode(&event).unwrap_err().to_string(),
            "member aggregate id 'acme' is not 'org/uuid'"
        );
        let event = stored("other", "x", "Whatever", "9", Value::Null);
        assert!(matches!(
            decode(&event),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        let event = stored("other", "x", "Whatever", "1", Value::Null);
        assert_eq!(decode(&event), Ok(Decoded::Other));
    }

    #[test]
    fn a_registered_upcaster_brings_an_old_version_to_the_current_one() {
        // A made-up version 0 of PointsExpired that called its points "amount".
        let rename: Upcasters = vec![Box::new(SemanticVersionEventUpcaster::new(
            "PointsExpired",
            "1",
            Box::new(|mut payload: Value| {
                if let Some(body) = payload.get_mut("PointsExpired").and_then(Value::as_object_mut) {
                    if let Some(amount) = body.remove("amount") {
                        body.insert("points".into(), amount);
                    }
                }
                payload
            }),
        ))];
        let old =
            json!({"PointsExpired": {"as_of": "2024-01-01T00:00:00Z", "amount": 5, "balance_after": 0}});
        let codec = Codec::with_upcasters(&rename);
        let event: MemberEvent = codec.decode_payload("PointsExpired", "0", old.clone()).unwrap();
        assert!(matches!(event, MemberEvent::PointsExpired { points: 5, .. }));
        let event = stored("member", &member_id(), "PointsExpired", "0", old.clone());
        assert!(matches!(codec.decode(&event), Ok(Decoded::Member(..))));
        // Without the upcaster, version 0 is refused.
        assert!(matches!(
            decode_member("PointsExpired", "0", old),
            Err(CodecError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn decoding_from_text_is_decoding_from_a_value() {
        let text = expired_payload().to_string();
        assert_eq!(
            decode_member_text("PointsExpired", "1", &text).unwrap(),
            decode_member("PointsExpired", "1", expired_payload()).unwrap()
        );
        let old = purchase_v1().to_string();
        assert_eq!(
            decode_member_text("PurchaseRecorded", "1", &old).unwrap(),
            decode_member("PurchaseRecorded", "1", purchase_v1()).unwrap(),
            "an old version is upcast on the way"
        );
        assert!(matches!(
            decode_member_text("PointsAdjusted", "1", &text),
            Err(CodecError::TypeMismatch { .. })
        ));
        assert!(matches!(
            decode_member_text("PointsExpired", "2", &text),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_member_text("PointsExpired", "1", "{\"Nope\": {}}"),
            Err(CodecError::BadPayload { .. })
        ));
    }

    #[test]
    fn a_stored_event_decodes_from_its_text_as_from_its_value() {
        let cases = [
            stored("member", &member_id(), "PointsExpired", "1", expired_payload()),
            stored("member", &member_id(), "PurchaseRecorded", "1", purchase_v1()),
            stored("member", "no-slash", "PointsExpired", "1", expired_payload()),
            stored("member", &member_id(), "PointsAdjusted", "1", expired_payload()),
            stored("member", &member_id(), "PointsExpired", "9", expired_payload()),
            stored("member", &member_id(), "PointsExpired", "1", json!({"Nope": {}})),
            stored("other", "x", "Whatever", "1", json!({})),
        ];
        for event in cases {
            let text = event.payload.to_string();
            let without_value = StoredEvent {
                payload: Value::Null,
                ..event.clone()
            };
            assert_eq!(
                format!("{:?}", decode_text(&without_value, &text)),
                format!("{:?}", decode(&event)),
                "{} {} {}",
                event.aggregate_id,
                event.event_type,
                event.event_version
            );
        }
    }

    /// A purchase as version 1 stored it: no basket lines, no breakdown.
    fn purchase_v1() -> Value {
        json!({"PurchaseRecorded": {
            "transaction_id": "t1", "location_id": "store-1", "amount_minor": 1999,
            "currency": "EUR", "occurred_at": "2024-01-01T10:00:00Z", "program_version": 3,
            "base_points": 19, "tier": "Silver", "multiplier_bps": 12500, "points_earned": 23,
            "expires_at": null, "balance_after": 123, "qualifying_points": 523
        }})
    }

    #[test]
    fn a_version_1_purchase_decodes_with_the_breakdown_it_earned() {
        let event = stored("member", &member_id(), "PurchaseRecorded", "1", purchase_v1());
        let Decoded::Member(
            _,
            MemberEvent::PurchaseRecorded {
                points_earned,
                base_points,
                items,
                breakdown,
                ..
            },
        ) = decode(&event).unwrap()
        else {
            panic!("not a PurchaseRecorded member event");
        };
        assert_eq!((base_points, points_earned, items), (19, 23, None));
        assert_eq!(
            breakdown,
            crate::member::earn::Breakdown {
                base: 19,
                tier_points: 23,
                promotions: vec![],
                cap_cut: 0,
                total: 23
            }
        );
        // Re-encoded, it is a version-2 event that decodes to itself.
        let decoded = decode_member("PurchaseRecorded", "1", purchase_v1()).unwrap();
        assert_eq!(cqrs_es::DomainEvent::event_version(&decoded), "2");
        let again = decode_member("PurchaseRecorded", "2", serde_json::to_value(&decoded).unwrap()).unwrap();
        assert_eq!(again, decoded);
        // Version 2 without a breakdown is a bad payload, not silently a zero breakdown.
        assert!(matches!(
            decode_member("PurchaseRecorded", "2", purchase_v1()),
            Err(CodecError::BadPayload { .. })
        ));
        // Other events stay at version 1.
        assert!(matches!(
            decode_member("PointsExpired", "2", expired_payload()),
            Err(CodecError::UnsupportedVersion { current: "1", .. })
        ));
    }

    #[test]
    fn decodes_program_events_from_columns() {
        let payload = json!({"LocationRegistered": {
            "org_id": "acme", "location_id": "s1", "name": "S1", "registered_at": "2024-01-01T00:00:00Z"
        }});
        let event = decode_program("LocationRegistered", "1", payload.clone()).unwrap();
        assert_eq!(event.type_name(), "LocationRegistered");
        let event = stored("program", "acme", "LocationRegistered", "1", payload);
        assert!(matches!(decode(&event), Ok(Decoded::Program(org, _)) if org == "acme"));
    }
}
