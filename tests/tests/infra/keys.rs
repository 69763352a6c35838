use common::keys::{self, ApiKey, Role};
use loyalty_tests::TestDb;

#[tokio::test]
async fn a_created_key_authenticates_as_its_org_and_role_and_is_stored_hashed() {
    let db = TestDb::new().await;
    let key = keys::create_key(db.pool(), "acme-coffee", Role::Pos)
        .await
        .unwrap();
    assert!(key.starts_with("lk_pos_"), "{key}");

    let found = keys::authenticate(db.pool(), &key).await.unwrap().unwrap();
    assert_eq!(found.org_id, "acme-coffee");
    assert_eq!(found.role, Role::Pos);

    let (hash, prefix): (String, String) =
        sqlx::query_as("SELECT key_hash, key_prefix FROM api_keys WHERE key_id = $1")
            .bind(found.key_id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(hash, keys::hash_key(&key));
    assert_eq!(prefix.len(), 8);
    assert!(key.starts_with(&format!("lk_pos_{prefix}")), "{key} {prefix}");
    let stored_plaintext: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE key_hash = $1 OR key_prefix = $1 OR org_id = $1",
    )
    .bind(&key)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(stored_plaintext, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn unknown_altered_and_revoked_keys_are_rejected() {
    let db = TestDb::new().await;
    let admin = keys::create_key(db.pool(), "acme", Role::Admin).await.unwrap();
    let analyst = keys::create_key(db.pool(), "acme", Role::Analyst).await.unwrap();

    assert_eq!(keys::authenticate(db.pool(), "").await.unwrap(), None);
    assert_eq!(
        keys::authenticate(db.pool(), &keys::generate_key(Role::Admin))
            .await
            .unwrap(),
        None
    );
    let mut altered = admin.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(keys::authenticate(db.pool(), &altered).await.unwrap(), None);

    let ApiKey { key_id, .. } = keys::authenticate(db.pool(), &admin).await.unwrap().unwrap();
    assert!(keys::revoke(db.pool(), key_id).await.unwrap());
    assert_eq!(keys::authenticate(db.pool(), &admin).await.unwrap(), None);
    assert!(
        !keys::revoke(db.pool(), key_id).await.unwrap(),
        "revoking twice reports a change"
    );
    // Other keys of the org are unaffected.
    let still = keys::authenticate(db.pool(), &analyst).await.unwrap().unwrap();
    assert_eq!((still.org_id.as_str(), still.role), ("acme", Role::Analyst));
    db.cleanup().await;
}

#[tokio::test]
async fn a_key_for_an_invalid_org_is_refused_and_nothing_is_stored() {
    let db = TestDb::new().await;
    let error = keys::create_key(db.pool(), "Acme Coffee", Role::Pos)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("invalid org id `Acme Coffee`"),
        "{error:#}"
    );
    // The table enforces the rule too, whoever writes to it.
    let direct = sqlx::query(
        "INSERT INTO api_keys (key_id, org_id, role, key_hash, key_prefix) \
         VALUES (gen_random_uuid(), '-acme', 'pos', repeat('a', 64), 'aaaaaaaa')",
    )
    .execute(db.pool())
    .await
    .unwrap_err();
    assert_eq!(
        direct.as_database_error().unwrap().constraint(),
        Some("api_keys_org_id_format")
    );
    let bad_role = sqlx::query(
        "INSERT INTO api_keys (key_id, org_id, role, key_hash, key_prefix) \
         VALUES (gen_random_uuid(), 'acme', 'root', repeat('a', 64), 'aaaaaaaa')",
    )
    .execute(db.pool())
    .await
    .unwrap_err();
    assert_eq!(
        bad_role.as_database_error().unwrap().constraint(),
        Some("api_keys_role_known")
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(count, 0);
    db.cleanup().await;
}
