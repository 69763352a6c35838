//! Answers every operation of the API can give, added to the OpenAPI document in one place so
//! that no operation forgets one (the fuzz test checks every status it receives is documented).

use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{ContentBuilder, Object, OpenApi, Ref, RefOr, ResponseBuilder, Type};

/// Statuses any operation may answer before its handler runs, with why.
const COMMON: &[(&str, &str)] = &[
    ("401", "No, malformed or unknown API key"),
    (
        "429",
        "The API key is over its rate (`rate_limited`); `Retry-After` says when to come back",
    ),
    (
        "503",
        "The service is at capacity (`overloaded`), or the request took too long (`timeout`); \
         `Retry-After` says when to retry, with the same Idempotency-Key for a write",
    ),
];

/// Statuses any operation with a JSON body may answer before its handler runs.
const WITH_BODY: &[(&str, &str)] = &[("415", "The body is not sent as application/json")];

/// Every operation of the document.
fn operations(openapi: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.patch.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

/// The `Retry-After` header of a refusal to come back later: seconds to wait.
fn retry_after(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Object::with_type(Type::Integer))
        .description(Some(description))
        .build()
}

/// Adds [`COMMON`] (and [`WITH_BODY`] where there is a request body), each with an
/// `ErrorBody` (and `Retry-After` on 429 and 503), to every operation that does not document it
/// yet.
pub fn add_common_responses(openapi: &mut OpenApi) {
    for operation in operations(openapi) {
        let with_body = if operation.request_body.is_some() {
            WITH_BODY
        } else {
            &[]
        };
        for (status, description) in COMMON.iter().chain(with_body) {
            operation
                .responses
                .responses
                .entry((*status).to_owned())
                .or_insert_with(|| {
                    let mut response = ResponseBuilder::new().description(*description).content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    );
                    if matches!(*status, "429" | "503") {
                        response =
                            response.header("Retry-After", retry_after("Seconds to wait before retrying"));
                    }
                    response.build().into()
                });
        }
    }
}

/// A 409 may be `request_in_progress` (a request with the same `Idempotency-Key` still runs, or
/// the reservation of one that died has not expired yet), answered with `Retry-After: 1`: says
/// so on every operation that documents a 409.
pub fn add_retry_after_to_conflicts(openapi: &mut OpenApi) {
    for operation in operations(openapi) {
        let Some(RefOr::T(conflict)) = operation.responses.responses.get_mut("409") else {
            continue;
        };
        conflict.description.push_str(
            "; or `request_in_progress`: a request with this Idempotency-Key is still running \
             (or died less than a lease ago): retry with the same key after `Retry-After`",
        );
        conflict.headers.insert(
            "Retry-After".to_owned(),
            retry_after(
                "With `request_in_progress`: seconds to wait before retrying with the same \
                 Idempotency-Key",
            ),
        );
    }
}
