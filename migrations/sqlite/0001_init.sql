-- strata catalog, version 1 (SQLite). Keys compare bytewise (BINARY collation), which is
-- S3's listing order for UTF-8 keys. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    backend TEXT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, upload_id);

CREATE TABLE parts (
    upload_id TEXT NOT NULL,
    part_number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
