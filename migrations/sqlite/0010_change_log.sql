-- strata catalog, version 10 (issue 22): a SQLite catalog logs its changes too, as a
-- PostgreSQL one has since version 7. The server's change feed (`src/catalog/feed.rs`)
-- polls the log and forgets the cached rows named there, so a row may stay cached for
-- long while nothing changes it, and a write by another process on this file
-- (`strata import`) still reaches the server's cache within `cluster.invalidation_lag`.
-- Triggers, so no write path can forget it; rows older than two minutes are pruned.
CREATE TRIGGER objects_inserted AFTER INSERT ON objects BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (NEW.bucket, NEW.key, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
CREATE TRIGGER objects_updated AFTER UPDATE ON objects BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (NEW.bucket, NEW.key, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
CREATE TRIGGER objects_deleted AFTER DELETE ON objects BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (OLD.bucket, OLD.key, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
CREATE TRIGGER buckets_inserted AFTER INSERT ON buckets BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (NEW.name, NULL, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
CREATE TRIGGER buckets_updated AFTER UPDATE ON buckets BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (NEW.name, NULL, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
CREATE TRIGGER buckets_deleted AFTER DELETE ON buckets BEGIN
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (OLD.name, NULL, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER));
END;
