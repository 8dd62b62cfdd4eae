-- strata catalog, version 6 (issue 15): copies of staging files held by other nodes
-- (journal.peer_copies), so that a peer can drain a write whose node is lost.
CREATE TABLE staging_copies (
    staging TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (staging, node)
);
