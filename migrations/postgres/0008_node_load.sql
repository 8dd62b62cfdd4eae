-- strata catalog, version 8 (issue 16): what each node's heartbeat reports of its load:
-- the bytes in its hot tier and the bytes it has read from other nodes' hot tiers.
ALTER TABLE nodes ADD COLUMN hot_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN peer_bytes BIGINT NOT NULL DEFAULT 0;
