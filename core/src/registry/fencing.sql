-- Fencing: an engine's heartbeat, the check of every hand-out, gc's fence. LIVE_OWNERS and
-- FENCE_CLASS are filled in by registry::ensure.
-- The heartbeat: refreshes the owner's seen_at, or fails when it was fenced.
CREATE OR REPLACE FUNCTION pgisolate.hold(k int4) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    UPDATE pgisolate.owners SET seen_at = now() WHERE owner_key = k AND fenced_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgisolate: the lease of owner % was fenced (not seen for longer than gc''s grace period)', k
            USING ERRCODE = 'PGI01';
    END IF;
END $pgi$;
-- The fence check of every transaction that hands out, pools or recycles a schema
-- ([`held_sql`]): a shared lock that gc's fence waits for, then, in the next statement (a new
-- snapshot), the owner's row, read: this raises when it was fenced. Concurrent hand-outs of one
-- engine never wait for each other, and nothing is handed out under a fenced owner: either the
-- fence committed first and the check fails, or the fence waits until the hand-out ends.
CREATE OR REPLACE FUNCTION pgisolate.fenced(k int4) RETURNS void LANGUAGE plpgsql AS $pgi$
BEGIN
    RAISE EXCEPTION 'pgisolate: the lease of owner % was fenced (not seen for longer than gc''s grace period)', k
        USING ERRCODE = 'PGI01';
END $pgi$;
-- gc's fence: owners whose lease is free and who went unseen for `grace` seconds. Each is
-- locked (in key order) before its row is read again, so hand-outs in flight finish first.
CREATE OR REPLACE FUNCTION pgisolate.fence(grace float8) RETURNS SETOF int4 LANGUAGE plpgsql AS $pgi$
DECLARE
    ks int4[];
BEGIN
    SELECT array_agg(o.owner_key ORDER BY o.owner_key) INTO ks FROM pgisolate.owners o
     WHERE o.fenced_at IS NULL AND o.seen_at < now() - make_interval(secs => grace)
       AND o.owner_key::int8 NOT IN (LIVE_OWNERS);
    IF ks IS NULL THEN
        RETURN;
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(FENCE_CLASS, k) FROM unnest(ks) k;
    RETURN QUERY UPDATE pgisolate.owners o SET fenced_at = now()
     WHERE o.owner_key = ANY (ks) AND o.fenced_at IS NULL AND o.seen_at < now() - make_interval(secs => grace)
       AND o.owner_key::int8 NOT IN (LIVE_OWNERS)
     RETURNING o.owner_key;
END $pgi$;
-- Whether an owner is gone: fenced, or (an owner without a row: engines before owner rows)
-- its lease is free.
CREATE OR REPLACE FUNCTION pgisolate.owner_gone(k int8) RETURNS boolean LANGUAGE sql STABLE AS $pgi$
    SELECT coalesce((SELECT o.fenced_at IS NOT NULL FROM pgisolate.owners o WHERE o.owner_key = k),
                    k NOT IN (LIVE_OWNERS))
$pgi$;
