-- strata catalog, version 9 (issue 20): access keys, their grants, and the audit trail of
-- changes to both. Secrets are sealed (AES-256-GCM under the seal key, which is not in the
-- catalog: docs/design/keys.md); `seal_probe` holds one sealed constant, so a node with a
-- different seal key is refused at start instead of failing every request.
CREATE TABLE access_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    previous_sealed TEXT,
    previous_until_ms BIGINT,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    enabled BIGINT NOT NULL,
    sources TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE key_grants (
    key_id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL,
    rights TEXT NOT NULL,
    PRIMARY KEY (key_id, bucket, prefix)
);
CREATE TABLE key_audit (
    seq BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE seal_probe (
    id BIGINT PRIMARY KEY,
    probe TEXT NOT NULL
);
