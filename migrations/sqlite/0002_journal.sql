-- strata catalog, version 2 (SQLite): the journal of writes some cold store lacks.
-- `staging` names the local staging file holding this version's bytes while any store
-- lacks it; `behind` lists (comma-separated) the stores that do not hold this version yet.
ALTER TABLE objects ADD COLUMN staging TEXT;
ALTER TABLE objects ADD COLUMN behind TEXT NOT NULL DEFAULT '';

-- One row per (write, store) still to be applied to that store, in `seq` order per key and
-- store. A row is deleted once the store holds the write. `node` is the strata node whose
-- journal directory holds the staging file.
CREATE TABLE journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    store TEXT NOT NULL,
    op TEXT NOT NULL,
    etag TEXT NOT NULL,
    size BIGINT NOT NULL,
    staging TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    next_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX journal_by_key ON journal (bucket, key, store, seq);
CREATE INDEX journal_by_node ON journal (node, next_ms);
CREATE INDEX journal_by_staging ON journal (staging);
