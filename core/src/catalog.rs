//! What a schema's DDL looks like, read from the catalogs: [`fingerprint`] is a
//! name-independent digest of everything a migration creates (tables, columns, defaults,
//! constraints, indexes, views, sequences, functions, triggers, types), to prove a copy equals
//! its template.

use tokio_postgres::Client;

use crate::error::{Error, Result};

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
