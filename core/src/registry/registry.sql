-- The registry: live schemas (leases), templates, owners (engines). Installed by
-- registry::ensure, once, under an advisory lock, with fencing.sql and recycle's SQL.
CREATE SCHEMA IF NOT EXISTS pgisolate;
COMMENT ON SCHEMA pgisolate IS 'pgisolate registry (do not edit): live schemas and templates';
CREATE TABLE IF NOT EXISTS pgisolate.leases (
    schema_name   text PRIMARY KEY,
    identity_hash text NOT NULL,
    identity      text NOT NULL,
    owner_key     int4 NOT NULL,
    run_id        text NOT NULL,
    host          text NOT NULL,
    pid           int4 NOT NULL,
    template      text,
    state         text NOT NULL DEFAULT 'live',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pgisolate.templates (
    fingerprint text PRIMARY KEY,
    schema_name text NOT NULL,
    replay_sql  text,
    built_by    int4 NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS seed_sql text;
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
ALTER TABLE pgisolate.templates ADD COLUMN IF NOT EXISTS last_used timestamptz NOT NULL DEFAULT now();
ALTER TABLE pgisolate.leases ADD COLUMN IF NOT EXISTS handout_txid bigint;
-- Owners (engines): one row per lease. An owner is alive while its advisory lock is held or
-- while its heartbeat refreshed seen_at within gc's grace period; gc fences an owner
-- that is neither (fenced_at) before it reaps anything of it, and a fenced owner never comes
-- back: an engine whose connection dropped re-takes its lease only if it was not fenced.
CREATE TABLE IF NOT EXISTS pgisolate.owners (
    owner_key  int4 PRIMARY KEY,
    host       text NOT NULL,
    pid        int4 NOT NULL,
    run_id     text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now(),
    fenced_at  timestamptz
);
