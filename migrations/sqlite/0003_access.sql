-- strata catalog, version 3: access rules set at runtime (admin API, `strata access`).
-- They override the config's rule for the same bucket and prefix field by field: a NULL
-- field keeps the config's value. `serve` is only meaningful for prefix ''.
CREATE TABLE access_rules (
    bucket TEXT NOT NULL,
    prefix TEXT NOT NULL,
    access TEXT,
    password_hash TEXT,
    cache_control TEXT,
    serve TEXT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (bucket, prefix)
);
