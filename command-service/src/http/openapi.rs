//! The OpenAPI document of the command API, served at `/openapi.json`.

use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::{doc_responses, jobs, members, program, promotions, quotes, simulations, storefront_keys};

/// The OpenAPI document of the command API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Loyalty command API",
        description = "Commands of POS terminals and admin tools. Every POST and PUT needs an \
                       `Idempotency-Key` header; errors are `{\"error\": {\"code\", \"message\", \"field\"}}`."
    ),
    paths(
        program::configure,
        program::get,
        program::register_location,
        promotions::add,
        promotions::change,
        promotions::end,
        members::enroll,
        members::get_member,
        members::get_member_by_external_id,
        members::record_purchase,
        members::record_purchase_by_external_id,
        quotes::quote_purchase,
        quotes::quote_purchase_by_external_id,
        simulations::simulate,
        members::refund_purchase,
        members::refund_purchase_by_external_id,
        members::redeem_reward,
        members::redeem_reward_by_external_id,
        members::adjust_points,
        members::adjust_points_by_external_id,
        jobs::expire_points,
        jobs::reevaluate_tiers,
        storefront_keys::create_publishable_key,
        storefront_keys::list_publishable_keys,
        storefront_keys::revoke_publishable_key,
        storefront_keys::create_signing_secret,
        storefront_keys::list_signing_secrets,
        storefront_keys::revoke_signing_secret,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "program", description = "Program, locations and promotions (admin)"),
        (name = "members", description = "Members and their points"),
        (name = "jobs", description = "System jobs over all members of an org (admin)"),
        (name = "storefront identity", description = "Publishable keys and the signing secrets of customer tokens (admin; SPEC §10)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        doc_responses::add_common_responses(openapi);
        doc_responses::add_retry_after_to_conflicts(openapi);
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key of the org: `Authorization: Bearer <key>`. A storefront widget \
                         redeeming for its shopper sends the org's publishable key there and the \
                         customer token in `X-Customer-Token`.",
                    ))
                    .build(),
            ),
        );
    }
}

pub async fn serve() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/v1/orgs/{org}/program",
            "/v1/orgs/{org}/locations",
            "/v1/orgs/{org}/members",
            "/v1/orgs/{org}/members/{member_id}",
            "/v1/orgs/{org}/members/{member_id}/purchases",
            "/v1/orgs/{org}/members/{member_id}/refunds",
            "/v1/orgs/{org}/members/{member_id}/redemptions",
            "/v1/orgs/{org}/members/{member_id}/adjustments",
            "/v1/orgs/{org}/members/by-external-id/{external_id}",
            "/v1/orgs/{org}/members/by-external-id/{external_id}/purchases",
            "/v1/orgs/{org}/jobs/expire-points",
            "/v1/orgs/{org}/jobs/reevaluate-tiers",
            "/v1/orgs/{org}/promotions",
            "/v1/orgs/{org}/promotions/{promotion_id}",
            "/v1/orgs/{org}/promotions/{promotion_id}/end",
            "/v1/orgs/{org}/members/{member_id}/purchase-quotes",
            "/v1/orgs/{org}/members/by-external-id/{external_id}/purchase-quotes",
            "/v1/orgs/{org}/publishable-keys",
            "/v1/orgs/{org}/publishable-keys/{key_id}/revoke",
            "/v1/orgs/{org}/signing-secrets",
            "/v1/orgs/{org}/signing-secrets/{secret_id}/revoke",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing from the OpenAPI document"
            );
        }
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for schema in [
            "PurchaseRequest",
            "MemberWriteResponse",
            "ErrorBody",
            "ProgramConfig",
            "Tier",
            "Promotion",
            "Effect",
            "EarnCap",
            "PurchaseItem",
            "Breakdown",
            "QuoteResponse",
            "NewSigningSecret",
            "SigningSecretList",
            "NewPublishableKey",
            "PublishableKeyList",
        ] {
            assert!(schemas.contains_key(schema), "schema {schema} missing");
        }
        assert_eq!(
            doc["components"]["schemas"]["PurchaseRequest"]["required"],
            serde_json::json!([
                "transaction_id",
                "location_id",
                "amount_minor",
                "currency",
                "occurred_at"
            ])
        );
    }
}
