-- Storefront identity (SPEC §10): publishable keys and the signing secrets of customer tokens.
--
-- Publishable keys are API keys of role `publishable` (public: they name the org and read only
-- its public data); they live in `api_keys` with every other role.
--
-- A signing secret is never stored. What is stored is a random salt; the secret handed to the
-- merchant once is HMAC-SHA256(pepper, secret_id || salt), where the pepper is the services'
-- SECRETS_PEPPER setting, kept outside the database. A dump of the database alone therefore
-- does not give the secrets (without a pepper configured it does: the services warn). The
-- pepper_id records which pepper derived a secret, so that services configured with another
-- one say so instead of refusing every token as wrongly signed. The fingerprint (the start of
-- SHA-256 of the secret) lets an operator tell which secret a merchant holds without
-- revealing any of it.
--
-- Every change of a key or a secret is announced on the channel `loyalty_credentials`
-- (LISTEN/NOTIFY), so the services' caches of both drop what they hold at once: a revoked key
-- or secret is refused within moments, not at the end of a cache lifetime.

ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_known;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role_known
    CHECK (role IN ('pos', 'admin', 'storefront', 'analyst', 'publishable'));

CREATE TABLE signing_secrets
(
    secret_id   uuid PRIMARY KEY,
    org_id      text        NOT NULL
        CONSTRAINT signing_secrets_org_id_format CHECK (org_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    salt        bytea       NOT NULL
        CONSTRAINT signing_secrets_salt_length CHECK (length(salt) = 32),
    pepper_id   text        NOT NULL,
    fingerprint text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX signing_secrets_org_id_idx ON signing_secrets (org_id, created_at);

CREATE FUNCTION notify_credentials_changed() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('loyalty_credentials', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON api_keys
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_credentials_changed();

CREATE TRIGGER signing_secrets_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON signing_secrets
    FOR EACH STATEMENT
EXECUTE FUNCTION notify_credentials_changed();
