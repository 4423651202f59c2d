-- The DDL watch (superuser only), installed by recycle::ddl_watch::ensure.
CREATE TABLE IF NOT EXISTS pgisolate.ddl_touched (nspname text PRIMARY KEY);
CREATE OR REPLACE FUNCTION pgisolate.note_ddl() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    -- GRANT/REVOKE report no schema: count them against the session's own schema.
    INSERT INTO pgisolate.ddl_touched (nspname)
        SELECT DISTINCT s.n FROM (
            SELECT coalesce(c.schema_name, current_schema()) AS n FROM pg_event_trigger_ddl_commands() c
        ) s
        WHERE s.n IS NOT NULL
          AND EXISTS (SELECT 1 FROM pgisolate.leases l WHERE l.schema_name = s.n AND l.state = 'live')
        ON CONFLICT DO NOTHING;
END $pgi$;
CREATE OR REPLACE FUNCTION pgisolate.note_drop() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    INSERT INTO pgisolate.ddl_touched (nspname)
        SELECT DISTINCT d.schema_name FROM pg_event_trigger_dropped_objects() d
        WHERE d.schema_name IS NOT NULL
          AND EXISTS (SELECT 1 FROM pgisolate.leases l WHERE l.schema_name = d.schema_name AND l.state = 'live')
        ON CONFLICT DO NOTHING;
END $pgi$;
CREATE OR REPLACE FUNCTION pgisolate.check_untouched(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    IF EXISTS (SELECT 1 FROM pgisolate.ddl_touched WHERE nspname = n) THEN
        RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
    END IF;
END $pgi$;
-- The same check inline ([`untouched_sql`]): this raises only when the record says DDL ran.
CREATE OR REPLACE FUNCTION pgisolate.ddl_ran(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
END $pgi$;
-- Which session ran each transaction with DDL (its application_name: a template build's URL
-- says `pgisolate/tpl_build_…`), so a build that reached outside its schema is told apart
-- from another session that made something there meanwhile, and drops only what it created
-- itself (see template/outside.rs). One row per transaction (its id is unique to it: no insert waits
-- for another's); rows older than ten minutes are deleted by the next build's check.
CREATE TABLE IF NOT EXISTS pgisolate.ddl_xacts (
    xid int8 PRIMARY KEY, app text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION pgisolate.note_xact() RETURNS event_trigger LANGUAGE plpgsql
    SECURITY DEFINER AS $pgi$
BEGIN
    IF pg_catalog.current_setting('pgisolate.internal', true) = 'on' THEN RETURN; END IF;
    INSERT INTO pgisolate.ddl_xacts (xid, app)
        VALUES (pg_catalog.txid_current() % 4294967296, pg_catalog.current_setting('application_name'))
        ON CONFLICT DO NOTHING;
END $pgi$;
DO $pgi$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_build') THEN
        CREATE EVENT TRIGGER pgisolate_build ON ddl_command_end EXECUTE FUNCTION pgisolate.note_xact();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_ddl') THEN
        CREATE EVENT TRIGGER pgisolate_ddl ON ddl_command_end EXECUTE FUNCTION pgisolate.note_ddl();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgisolate_drop') THEN
        CREATE EVENT TRIGGER pgisolate_drop ON sql_drop EXECUTE FUNCTION pgisolate.note_drop();
    END IF;
END $pgi$;
