-- Which tables tests wrote: a statement-level trigger on every template table (made ENABLE
-- ALWAYS, so session_replication_role does not silence it) notes the table here, so a
-- recycled schema resets only those. The trigger is what every test connection's first write
-- pays for (its function compiled, its statements planned, this table opened in a new
-- backend), so it does the least it can: one row appended per write statement, no index, no
-- lookup, run as the writer (every role may append here; nothing here can be read by them).
-- Never upserted: a unique key would make a write wait for another session's open transaction
-- that wrote the same table. The engine's own writes (a reset, a pool fill) run with
-- `pgisolate.internal = on` and are not noted.
CREATE TABLE IF NOT EXISTS pgisolate.written (rel oid NOT NULL);
DROP INDEX IF EXISTS pgisolate.written_rel;
GRANT USAGE ON SCHEMA pgisolate TO PUBLIC;
GRANT INSERT ON pgisolate.written TO PUBLIC;
CREATE OR REPLACE FUNCTION pgisolate.note_write() RETURNS trigger LANGUAGE plpgsql
    SECURITY INVOKER AS $pgi$
BEGIN
    IF pg_catalog.current_setting('pgisolate.internal', true) = 'on' THEN RETURN NULL; END IF;
    INSERT INTO pgisolate.written VALUES (TG_RELID);
    RETURN NULL;
END $pgi$;
