-- strata catalog, version 1 (PostgreSQL). Keys compare bytewise (COLLATE "C"), which is
-- S3's listing order for UTF-8 keys. Timestamps are milliseconds since the Unix epoch.
CREATE TABLE buckets (
    name TEXT COLLATE "C" PRIMARY KEY,
    backend TEXT NOT NULL,
    prefix TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE objects (
    bucket TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    backend TEXT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE TABLE uploads (
    upload_id TEXT COLLATE "C" PRIMARY KEY,
    bucket TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    headers TEXT NOT NULL,
    user_meta TEXT NOT NULL
);
CREATE INDEX uploads_by_key ON uploads (bucket, key, upload_id);

CREATE TABLE parts (
    upload_id TEXT COLLATE "C" NOT NULL,
    part_number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
