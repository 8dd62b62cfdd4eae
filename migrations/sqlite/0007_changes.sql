-- strata catalog, version 7 (issue 15): the change log of PostgreSQL catalogs shared by
-- several nodes. A SQLite catalog has one node, which updates its row cache itself, so
-- this table stays empty here; it exists so both dialects have the same tables.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT,
    at_ms BIGINT NOT NULL
);
