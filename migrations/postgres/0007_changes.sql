-- strata catalog, version 7 (issue 15): the change log. Every change of an object or bucket
-- row adds a row here in the same transaction (triggers, so no write path can forget it)
-- and a NOTIFY on channel strata_changes. Each node polls the log (the truth) and listens
-- (a hint), and forgets the rows it cached. Rows older than a minute are pruned.
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT,
    at_ms BIGINT NOT NULL
);

CREATE FUNCTION strata_note_change() RETURNS trigger AS $$
DECLARE
    b TEXT;
    k TEXT;
BEGIN
    IF TG_TABLE_NAME = 'buckets' THEN
        IF TG_OP = 'DELETE' THEN b := OLD.name; ELSE b := NEW.name; END IF;
        k := NULL;
    ELSIF TG_OP = 'DELETE' THEN
        b := OLD.bucket; k := OLD.key;
    ELSE
        b := NEW.bucket; k := NEW.key;
    END IF;
    INSERT INTO changes (bucket, key, at_ms)
        VALUES (b, k, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT));
    PERFORM pg_notify('strata_changes', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER objects_changed AFTER INSERT OR UPDATE OR DELETE ON objects
    FOR EACH ROW EXECUTE FUNCTION strata_note_change();
CREATE TRIGGER buckets_changed AFTER INSERT OR UPDATE OR DELETE ON buckets
    FOR EACH ROW EXECUTE FUNCTION strata_note_change();
