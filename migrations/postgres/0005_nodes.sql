-- strata catalog, version 5 (issue 15): the nodes that share this catalog. Each running
-- node renews its row's lease every few seconds; a node whose lease has passed is down.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    version TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    state TEXT NOT NULL
);
