-- Recycling without superuser: did the schema's catalog change since its hand-out? A test's
-- DDL (CREATE, ALTER, GRANT, TRUNCATE) writes catalog rows newer than the hand-out (age(xmin)
-- counts transactions back from now; the hand-out's own rows are exactly `since` old); a DROP
-- leaves fewer rows than the template has. Data does neither. Every row is reached through an
-- index, from the schema's entries in pg_depend: the cost follows the schema's size, never the
-- size of the catalogs (which every pooled copy of every template grows).
CREATE OR REPLACE FUNCTION pgisolate.schema_state(ns oid, since bigint) RETURNS bigint[] LANGUAGE plpgsql STABLE AS $pgi$
DECLARE
    rels oid[];
    objs oid[];
    c bigint;
    n bigint[] := '{}';
    fresh boolean := false;
    f boolean;
BEGIN
    -- Everything in the schema (tables, views, sequences, functions, types, ...) depends on it.
    SELECT count(*), coalesce(bool_or(age(d.xmin) < since), false),
           array_agg(d.objid) FILTER (WHERE d.classid = 'pg_class'::regclass),
           array_agg(d.objid) FILTER (WHERE d.classid IN ('pg_proc'::regclass, 'pg_type'::regclass))
      INTO c, f, rels, objs
      FROM pg_depend d WHERE d.refclassid = 'pg_namespace'::regclass AND d.refobjid = ns;
    n := n || c; fresh := fresh OR f;
    rels := coalesce(rels, '{}');
    objs := coalesce(objs, '{}');
    -- Indexes depend on their table, not on the schema.
    rels := rels || coalesce((SELECT array_agg(x.indexrelid) FROM unnest(rels) t(o),
        LATERAL (SELECT indexrelid FROM pg_index WHERE indrelid = t.o OFFSET 0) x), '{}');
    n := n || cardinality(rels)::bigint;
    SELECT coalesce(bool_or(age(x.xmin) < since), false) INTO f FROM unnest(rels) t(o),
        LATERAL (SELECT xmin FROM pg_class WHERE oid = t.o OFFSET 0) x;
    fresh := fresh OR f;
    SELECT count(*) FILTER (WHERE NOT x.attisdropped), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin, attisdropped FROM pg_attribute WHERE attrelid = t.o AND attnum > 0 OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_constraint WHERE conrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_index WHERE indrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_trigger WHERE tgrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_attrdef WHERE adrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_rewrite WHERE ev_class = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_sequence WHERE seqrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f
        FROM unnest(rels) t(o), LATERAL (SELECT xmin FROM pg_policy WHERE polrelid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    -- Functions and types: their own rows, domain constraints and enum labels.
    SELECT coalesce(bool_or(age(x.xmin) < since), false) INTO f FROM unnest(objs) t(o),
        LATERAL (SELECT xmin FROM pg_proc WHERE oid = t.o UNION ALL SELECT xmin FROM pg_type WHERE oid = t.o OFFSET 0) x;
    fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f FROM unnest(objs) t(o),
        LATERAL (SELECT xmin FROM pg_constraint WHERE contypid = t.o UNION ALL SELECT xmin FROM pg_enum WHERE enumtypid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT count(*), coalesce(bool_or(age(x.xmin) < since), false) INTO c, f FROM unnest(rels || objs) t(o),
        LATERAL (SELECT xmin FROM pg_description WHERE objoid = t.o OFFSET 0) x;
    n := n || c; fresh := fresh OR f;
    SELECT fresh OR coalesce(age(xmin) < since, false) INTO fresh FROM pg_namespace WHERE oid = ns;
    RETURN n || (CASE WHEN fresh THEN 1 ELSE 0 END)::bigint;
END $pgi$;
-- The template's counts, computed once (a template never changes; a rebuilt one is a new schema).
CREATE TABLE IF NOT EXISTS pgisolate.template_state (nsp oid PRIMARY KEY, state bigint[] NOT NULL);
CREATE OR REPLACE FUNCTION pgisolate.check_unchanged(n text) RETURNS void LANGUAGE plpgsql AS $pgi$
DECLARE
    since bigint;
    ns oid;
    tpl oid;
    want bigint[];
    got bigint[];
BEGIN
    SELECT txid_current() - l.handout_txid, t.oid INTO since, tpl
        FROM pgisolate.leases l LEFT JOIN pg_namespace t ON t.nspname = l.template WHERE l.schema_name = n;
    SELECT oid INTO ns FROM pg_namespace WHERE nspname = n;
    IF since IS NOT NULL AND ns IS NOT NULL AND tpl IS NOT NULL THEN
        SELECT state INTO want FROM pgisolate.template_state WHERE nsp = tpl;
        IF want IS NULL THEN
            want := pgisolate.schema_state(tpl, 0);
            INSERT INTO pgisolate.template_state VALUES (tpl, want) ON CONFLICT DO NOTHING;
        END IF;
        got := pgisolate.schema_state(ns, since);
        IF got = want THEN
            RETURN;
        END IF;
    END IF;
    RAISE EXCEPTION 'pgisolate: DDL ran in schema %', n USING ERRCODE = 'P0001';
END $pgi$;
