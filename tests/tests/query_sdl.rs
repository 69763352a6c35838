//! The GraphQL schema is a contract: the SDL the query service serves must equal the one
//! checked in at `schema/graphql/schema.graphql`. After an intended change, regenerate it with
//! `UPDATE_SDL=1 cargo test -p loyalty-tests --test query_sdl` and review the diff.

use loyalty_tests::{spawn_query_service, TestDb, TestNats};

#[tokio::test]
async fn the_served_schema_is_the_checked_in_sdl() {
    let db = TestDb::new().await;
    let nats = TestNats::new().await;
    let service = spawn_query_service(&db, &nats).await;

    let response = reqwest::get(service.url("/graphql/schema.graphql"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let served = response.text().await.unwrap();
    assert_eq!(
        served,
        query_service::graphql::sdl(),
        "the service serves its own schema"
    );

    let path = schema::GRAPHQL_SDL_PATH;
    if std::env::var_os("UPDATE_SDL").is_some() {
        std::fs::write(path, &served).unwrap();
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    if served != checked_in {
        let first_difference = served
            .lines()
            .zip(checked_in.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| served.lines().count().min(checked_in.lines().count()));
        panic!(
            "the served GraphQL schema differs from {path} (first at line {}).\n\
             If the change is intended, regenerate the file with\n  \
             UPDATE_SDL=1 cargo test -p loyalty-tests --test query_sdl\n\
             and review its diff: integrators build against it.",
            first_difference + 1
        );
    }

    service.stop().await.unwrap();
    nats.cleanup().await;
    db.cleanup().await;
}
