-- API keys of every role (pos, admin, storefront, analyst), one table for all services.
-- Only the SHA-256 of a key is stored; key_prefix lets an operator recognise a key in a listing.

CREATE TABLE api_keys
(
    key_id     uuid PRIMARY KEY,
    org_id     text        NOT NULL
        CONSTRAINT api_keys_org_id_format CHECK (org_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    role       text        NOT NULL
        CONSTRAINT api_keys_role_known CHECK (role IN ('pos', 'admin', 'storefront', 'analyst')),
    key_hash   text        NOT NULL UNIQUE
        CONSTRAINT api_keys_key_hash_sha256_hex CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    key_prefix text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX api_keys_org_id_idx ON api_keys (org_id);
