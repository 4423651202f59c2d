//! What a schema's DDL looks like, read from the catalogs.
//!
//! - [`fingerprint`]: a name-independent digest of everything a migration creates (tables,
//!   columns, defaults, constraints, indexes, views, sequences, functions, triggers, types), to
//!   prove a copy equals its template.
//! - [`stamp_sql`]: a cheap DDL change detector (how many catalog rows belong to the schema and
//!   the newest transaction that wrote one). Row changes (INSERT/UPDATE/DELETE, setval) leave it
//!   alone; any DDL changes it. Recycling compares stamps.

use tokio_postgres::Client;

use crate::error::{Error, Result};

/// SQL computing the stamp of the schema whose name is the literal `schema_literal`.
pub fn stamp_sql(schema_literal: &str) -> String {
    format!(
        "with ns as (select oid from pg_namespace where nspname = {s}), \
         rels as (select oid, xmin from pg_class where relnamespace = (select oid from ns)) \
         select count(*)::text || ':' || coalesce(max(x::text::int8), 0)::text from ( \
           select xmin as x from rels \
           union all select a.xmin from pg_attribute a where a.attrelid in (select oid from rels) \
           union all select d.xmin from pg_attrdef d where d.adrelid in (select oid from rels) \
           union all select i.xmin from pg_index i where i.indrelid in (select oid from rels) \
           union all select t.xmin from pg_trigger t where t.tgrelid in (select oid from rels) \
           union all select r.xmin from pg_rewrite r where r.ev_class in (select oid from rels) \
           union all select c.xmin from pg_constraint c where c.connamespace = (select oid from ns) \
           union all select p.xmin from pg_proc p where p.pronamespace = (select oid from ns) \
           union all select y.xmin from pg_type y where y.typnamespace = (select oid from ns) \
         ) s",
        s = schema_literal
    )
}

/// The DDL stamp of `schema`.
pub async fn stamp(client: &Client, schema: &str) -> Result<String> {
    let rows = client
        .simple_query(&stamp_sql(&crate::admin::literal(schema)))
        .await
        .map_err(|e| Error::db("read the schema's DDL stamp", e))?;
    last_value(rows).ok_or_else(|| Error::Server("the DDL stamp query returned no row".into()))
}

/// The first column of the last row of a simple-query result (the batch's final SELECT).
pub fn last_value(rows: Vec<tokio_postgres::SimpleQueryMessage>) -> Option<String> {
    rows.into_iter().rev().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

/// A digest of `schema`'s DDL that does not depend on the schema's name, with the lines it
/// was computed from (for diagnostics).
pub async fn fingerprint(client: &Client, schema: &str) -> Result<(String, Vec<String>)> {
    let rows = client
        .query(
            "with ns as (select oid, nspname from pg_namespace where nspname = $1) \
             select replace(line, (select nspname from ns) || '.', '@.') from ( \
               select 'rel ' || c.relname || ' ' || c.relkind::text as line from pg_class c \
                 where c.relnamespace = (select oid from ns) and c.relkind in ('r','p','v','m','S','f','i','I') \
               union all select 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) \
                   || case when a.attnotnull then ' not null' else '' end \
                   || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') \
                   || case when a.attidentity <> '' then ' identity ' || a.attidentity::text else '' end \
                 from pg_attribute a join pg_class c on c.oid = a.attrelid \
                 left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum \
                 where c.relnamespace = (select oid from ns) and a.attnum > 0 and not a.attisdropped \
               union all select 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) \
                 from pg_constraint where connamespace = (select oid from ns) \
               union all select 'idx ' || pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indrelid \
                 where c.relnamespace = (select oid from ns) \
               union all select 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid) from pg_class c \
                 where c.relnamespace = (select oid from ns) and c.relkind in ('v','m') \
               union all select 'seq ' || c.relname || ' ' || s.seqtypid::regtype::text || ' ' || s.seqstart || ' ' || s.seqincrement \
                   || ' ' || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache || ' ' || s.seqcycle \
                 from pg_sequence s join pg_class c on c.oid = s.seqrelid where c.relnamespace = (select oid from ns) \
               union all select 'fn ' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') ' \
                   || pg_get_function_result(p.oid) || ' ' || md5(p.prosrc) \
                 from pg_proc p where p.pronamespace = (select oid from ns) \
               union all select 'trg ' || pg_get_triggerdef(t.oid) from pg_trigger t join pg_class c on c.oid = t.tgrelid \
                 where c.relnamespace = (select oid from ns) and not t.tgisinternal \
               union all select 'type ' || y.typname || ' ' || y.typtype::text || coalesce(' ' || ( \
                   select string_agg(e.enumlabel, ',' order by e.enumsortorder) from pg_enum e where e.enumtypid = y.oid), '') \
                 from pg_type y where y.typnamespace = (select oid from ns) and y.typtype in ('e','d','c') \
                   and not exists (select 1 from pg_class c where c.oid = y.typrelid and c.relkind <> 'c') \
             ) s order by 1",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("read the schema's catalog", e))?;
    let lines: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    let digest = crate::naming::sha256_hex(lines.join("\n").as_bytes());
    Ok((digest, lines))
}
