//! Putting a recycled schema back to its template's state, touching only what the test changed.
//!
//! Every template table carries a statement-level trigger, [`TRIGGER`] (`ENABLE ALWAYS`, so a
//! test's `session_replication_role` does not silence it), that notes the table in
//! `pgisolate.written` when a statement writes it: INSERT, UPDATE, DELETE, TRUNCATE, COPY, and
//! the deletes and updates foreign-key cascades make. A reset reads and clears the schema's
//! notes and each sequence's position in one statement, then empties and refills only the
//! written tables and sets back only the sequences that moved (a failed INSERT moves its
//! sequence without writing anything). Its cost follows what the test touched, not the size of
//! the schema. A template without the triggers (built by an older engine) is reset whole.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::sql::{ident, PLACEHOLDER};

/// The write-noting trigger on every template table.
pub(crate) const TRIGGER: &str = "pgisolate_written";

/// One sequence of a template: where the template left it.
#[derive(Debug, Clone)]
struct Sequence {
    /// Quoted name.
    name: String,
    /// `pg_sequence_last_value` of the template's: its last value when called, else NULL.
    last: Option<i64>,
    /// The `setval` statement restoring it ([`PLACEHOLDER`] for the schema).
    setval: String,
}

/// What resetting a copy of a template needs to know.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Whether every table carries [`TRIGGER`].
    tracked: bool,
    /// Its tables (quoted, partitions left out: emptying a table empties its partitions).
    tables: Vec<String>,
    /// Seed rows: (quoted table, INSERT statements), in the dump's order (referenced first).
    seeds: Vec<(String, String)>,
    sequences: Vec<Sequence>,
    /// For each table, the other tables whose foreign keys reference it (TRUNCATE needs them).
    children: HashMap<String, Vec<String>>,
    /// Enabled user triggers of each table and its partitions: (relation, trigger, how enabled).
    triggers: HashMap<String, Vec<(String, String, &'static str)>>,
    /// Tables whose row-level security applies to their owner too (FORCE): a DELETE by the
    /// owner would leave the rows it cannot see, so they are truncated.
    forced: BTreeSet<String>,
}

impl Plan {
    /// Reads template `schema`'s tables, foreign keys and triggers; `seed_sql` is its captured
    /// rows and sequence positions (`pg_dump --data-only`, [`PLACEHOLDER`] for the schema).
    pub(crate) async fn load(client: &Client, schema: &str, seed_sql: Option<&str>) -> Result<Plan> {
        // Every row through an index (the schema's relations from pg_depend, their foreign
        // keys and triggers by table): pg_constraint has no index on the referenced table, and
        // asking it per table scanned it once for each of them.
        let rows = client
            .query(
                "with t as (select c.oid, c.relname, c.relkind, c.relispartition, c.relforcerowsecurity from pg_depend d \
                   join pg_class c on c.oid = d.objid \
                   where d.refclassid = 'pg_namespace'::regclass and d.refobjid = to_regnamespace(quote_ident($1)) \
                     and d.classid = 'pg_class'::regclass and c.relkind in ('r', 'p')) \
                 select quote_ident(t.relname), t.relispartition, \
                   exists (select 1 from pg_trigger g where g.tgrelid = t.oid and g.tgname = $2), \
                   (select quote_ident(r.relname) from pg_class r where r.oid = coalesce(pg_partition_root(t.oid), t.oid)), \
                   array(select quote_ident(p.relname) from pg_constraint k \
                         join pg_class p on p.oid = coalesce(pg_partition_root(k.confrelid), k.confrelid) \
                         where k.conrelid = t.oid and k.contype = 'f' \
                           and p.relnamespace = to_regnamespace(quote_ident($1)))::text[], \
                   array(select quote_ident(p.relname) || ' ' || quote_ident(g.tgname) || ' ' || g.tgenabled::text \
                         from (select t.oid as relid, 0 as level where t.relkind <> 'p' \
                               union all select relid, level from pg_partition_tree(t.oid) where t.relkind = 'p') pt \
                         join pg_class p on p.oid = pt.relid \
                         join pg_trigger g on g.tgrelid = pt.relid \
                         where not g.tgisinternal and g.tgenabled <> 'D' and g.tgname <> $2 \
                         order by pt.level, p.oid, g.oid)::text[], \
                   t.relforcerowsecurity \
                 from t order by t.oid",
                &[&schema, &TRIGGER],
            )
            .await
            .map_err(|e| Error::db("read the template's tables", e))?;
        let mut plan = Plan { tracked: !rows.is_empty(), ..Plan::default() };
        for r in &rows {
            let name: String = r.get(0);
            plan.tracked &= r.get::<_, bool>(2);
            // Foreign keys, as parent -> children between whole (root) tables.
            let root: String = r.get(3);
            for parent in r.get::<_, Vec<String>>(4) {
                let children = plan.children.entry(parent.clone()).or_default();
                if parent != root && !children.contains(&root) {
                    children.push(root.clone());
                }
            }
            if r.get::<_, bool>(1) {
                continue;
            }
            let triggers: Vec<(String, String, &'static str)> = r
                .get::<_, Vec<String>>(5)
                .iter()
                .filter_map(|t| {
                    // "<relation> <trigger> <O|A|R>"; both names are quoted identifiers.
                    let (rest, mode) = t.rsplit_once(' ')?;
                    let (rel, trg) = split_ident(rest)?;
                    let how = match mode {
                        "A" => "ENABLE ALWAYS",
                        "R" => "ENABLE REPLICA",
                        _ => "ENABLE",
                    };
                    Some((rel.to_owned(), trg.trim_start().to_owned(), how))
                })
                .collect();
            if !triggers.is_empty() {
                plan.triggers.insert(name.clone(), triggers);
            }
            if r.get::<_, bool>(6) {
                plan.forced.insert(name.clone());
            }
            plan.tables.push(name);
        }
        if let Some(seed) = seed_sql {
            let (seeds, sequences) = parse_seed(seed);
            plan.seeds = seeds;
            plan.sequences = sequences;
        }
        Ok(plan)
    }

    /// The template's tables (quoted).
    pub(crate) fn tables(&self) -> &[String] {
        &self.tables
    }

    /// Whether writes are noted, so a reset can be limited to them.
    pub(crate) fn tracked(&self) -> bool {
        self.tracked
    }

    /// One statement that clears the write notes of the schema whose oid is `$1` and returns
    /// the written tables (quoted names) and its sequences: oids, quoted names, positions
    /// (compare them with [`Plan::moved`]). Every catalog row is reached through an index (the
    /// notes' tables by oid, the sequences through pg_depend): a join the planner turns into a
    /// scan of pg_class, or a nested loop over the sequences, costs milliseconds once the pool
    /// fills the catalog.
    pub(crate) const CHANGES_SQL: &'static str = "WITH d AS (DELETE FROM pgisolate.written w \
         WHERE (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = w.rel) = $1::oid RETURNING w.rel), \
         s AS MATERIALIZED (SELECT c.oid AS o, pg_catalog.quote_ident(c.relname) AS n, \
               pg_catalog.pg_sequence_last_value(c.oid) AS l \
               FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_class c ON c.oid = dep.objid \
               WHERE dep.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND dep.refobjid = $1::oid \
               AND dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.relkind = 'S') \
         SELECT ARRAY(SELECT DISTINCT (SELECT pg_catalog.quote_ident(r.relname) FROM pg_catalog.pg_class r \
                WHERE r.oid = coalesce(pg_catalog.pg_partition_root(d.rel), d.rel)) FROM d)::text[], \
         ARRAY(SELECT o FROM s)::oid[], ARRAY(SELECT n FROM s)::text[], ARRAY(SELECT l FROM s)::int8[]";

    /// [`Plan::CHANGES_SQL`] for a schema whose sequences (`$2`, oids) are known from an earlier
    /// reset: only their positions, in that order. Reading them by oid skips the catalog.
    pub(crate) const CHANGES_KNOWN_SQL: &'static str = "WITH d AS (DELETE FROM pgisolate.written w \
         WHERE (SELECT c.relnamespace FROM pg_catalog.pg_class c WHERE c.oid = w.rel) = $1::oid RETURNING w.rel) \
         SELECT ARRAY(SELECT DISTINCT (SELECT pg_catalog.quote_ident(r.relname) FROM pg_catalog.pg_class r \
                WHERE r.oid = coalesce(pg_catalog.pg_partition_root(d.rel), d.rel)) FROM d)::text[], \
         ARRAY(SELECT pg_catalog.pg_sequence_last_value(u.o::pg_catalog.regclass) \
               FROM unnest($2::oid[]) WITH ORDINALITY u(o, i) ORDER BY u.i)::int8[]";

    /// The sequences (of `names` with `positions`, as [`Plan::changes_sql`] returns them) that
    /// are not where the template left them.
    pub(crate) fn moved(&self, names: &[String], positions: &[Option<i64>]) -> Vec<String> {
        let now: HashMap<&str, Option<i64>> = names.iter().map(String::as_str).zip(positions.iter().copied()).collect();
        self.sequences.iter().filter(|q| now.get(q.name.as_str()) != Some(&q.last)).map(|q| q.name.clone()).collect()
    }

    /// Every table and sequence: what a reset without write notes must restore.
    pub(crate) fn everything(&self) -> (Vec<String>, Vec<String>) {
        (self.tables.clone(), self.sequences.iter().map(|s| s.name.clone()).collect())
    }

    /// The statements (for one transaction) that give `schema` the template's rows in the
    /// `written` tables and its positions in the `moved` sequences; `None` when nothing
    /// changed. As superuser: DELETE from the written tables with triggers and foreign keys off,
    /// then their seed rows. Otherwise, with the touched tables' enabled user triggers off (by
    /// name, restored as they were): a written table with seed rows (or with row-level security
    /// forced on its owner) is truncated together with
    /// every table referencing it (other seeds may point at its rows) and refilled; a written
    /// table without seed rows can only be referenced by rows the test wrote, so it is emptied
    /// by DELETE after the written tables that reference it (tables in a foreign-key cycle are
    /// truncated instead).
    pub(crate) fn reset_sql(
        &self,
        schema: &str,
        written: &[String],
        moved: &[String],
        superuser: bool,
    ) -> Option<String> {
        let known: BTreeSet<&str> = self.tables.iter().map(String::as_str).collect();
        let seeded: BTreeSet<&str> = self.seeds.iter().map(|(t, _)| t.as_str()).collect();
        let mut written: Vec<&str> = written.iter().map(String::as_str).filter(|t| known.contains(t)).collect();
        written.dedup();
        let moved: Vec<&Sequence> = self.sequences.iter().filter(|s| moved.contains(&s.name)).collect();
        if written.is_empty() && moved.is_empty() {
            return None;
        }
        let (truncate, delete) = if superuser {
            (Vec::new(), written.clone())
        } else {
            let mut truncate: Vec<&str> =
                written.iter().copied().filter(|t| seeded.contains(t) || self.forced.contains(*t)).collect();
            self.close_over_children(&mut truncate);
            let mut rest: Vec<&str> = written.iter().copied().filter(|t| !truncate.contains(t)).collect();
            // Children first; what cannot be ordered (a cycle) is truncated instead.
            let mut delete: Vec<&str> = Vec::new();
            while !rest.is_empty() {
                let ready: Vec<&str> = rest
                    .iter()
                    .copied()
                    .filter(|t| {
                        self.children.get(*t).into_iter().flatten().all(|c| !rest.contains(&c.as_str()) || c == t)
                    })
                    .collect();
                if ready.is_empty() {
                    truncate.append(&mut rest);
                    self.close_over_children(&mut truncate);
                    break;
                }
                rest.retain(|t| !ready.contains(t));
                delete.extend(ready);
            }
            delete.retain(|t| !truncate.contains(t));
            (truncate, delete)
        };
        let s = ident(schema);
        let quiet: Vec<&(String, String, &'static str)> = if superuser {
            Vec::new()
        } else {
            truncate.iter().chain(&delete).flat_map(|t| self.triggers.get(*t).into_iter().flatten()).collect()
        };
        let mut sql = String::new();
        if superuser {
            sql.push_str("SET LOCAL session_replication_role = replica;\n");
        }
        for (rel, trg, _) in &quiet {
            sql.push_str(&format!("ALTER TABLE {s}.{rel} DISABLE TRIGGER {trg};\n"));
        }
        if !truncate.is_empty() {
            let list: Vec<String> = truncate.iter().map(|t| format!("{s}.{t}")).collect();
            sql.push_str(&format!("TRUNCATE {};\n", list.join(", ")));
        }
        for t in &delete {
            sql.push_str(&format!("DELETE FROM {s}.{t};\n"));
        }
        sql.push_str("SELECT pg_catalog.set_config('search_path', '', true);\n");
        let refill = if superuser { &delete } else { &truncate };
        for (table, rows) in &self.seeds {
            if refill.contains(&table.as_str()) {
                sql.push_str(&rows.replace(PLACEHOLDER, schema));
                sql.push_str("\n;\n");
            }
        }
        for (rel, trg, how) in &quiet {
            sql.push_str(&format!("ALTER TABLE {s}.{rel} {how} TRIGGER {trg};\n"));
        }
        for q in moved {
            sql.push_str(&q.setval.replace(PLACEHOLDER, schema));
            sql.push('\n');
        }
        Some(sql)
    }

    /// Adds to `tables` every table whose foreign keys reference one of them, transitively.
    fn close_over_children<'a>(&'a self, tables: &mut Vec<&'a str>) {
        let mut i = 0;
        while i < tables.len() {
            for c in self.children.get(tables[i]).into_iter().flatten() {
                if !tables.contains(&c.as_str()) {
                    tables.push(c);
                }
            }
            i += 1;
        }
    }
}

/// Puts [`TRIGGER`] on every table of build schema `schema` (partitions too: a statement on a
/// partition fires only its own triggers). Foreign tables are not reset and get none.
pub(crate) async fn install(client: &Client, schema: &str) -> Result<()> {
    let rows = client
        .query(
            "select quote_ident(c.relname) from pg_class c where c.relnamespace = to_regnamespace(quote_ident($1)) \
             and c.relkind in ('r', 'p') order by c.oid",
            &[&schema],
        )
        .await
        .map_err(|e| Error::db("list the build's tables", e))?;
    if rows.is_empty() {
        return Ok(());
    }
    let s = ident(schema);
    let mut sql = format!("BEGIN; {}\n", crate::registry::INTERNAL);
    for r in &rows {
        let t: String = r.get(0);
        sql.push_str(&format!(
            "CREATE TRIGGER {TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {s}.{t} \
             FOR EACH STATEMENT EXECUTE FUNCTION pgisolate.note_write();\n\
             ALTER TABLE {s}.{t} ENABLE ALWAYS TRIGGER {TRIGGER};\n"
        ));
    }
    sql.push_str("COMMIT;");
    crate::admin::exec(client, "add the write triggers to the template", &sql).await
}

/// Splits "<quoted identifier> <rest>" after the identifier (quote_ident output: bare or
/// double-quoted with doubled quotes inside).
fn split_ident(s: &str) -> Option<(&str, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|(_, n)| *n) == Some('"') {
                    chars.next();
                    continue;
                }
                let end = i + 2;
                return Some((&s[..end], &s[end..]));
            }
        }
        None
    } else {
        s.split_once(' ').map(|(a, _)| (a, &s[a.len()..]))
    }
}

/// Splits captured `pg_dump --data-only` output into each table's INSERT statements (in order)
/// and each sequence's `setval`.
fn parse_seed(seed: &str) -> (Vec<(String, String)>, Vec<Sequence>) {
    let insert = format!("INSERT INTO {PLACEHOLDER}.");
    let mut seeds: Vec<(String, String)> = Vec::new();
    let mut sequences = Vec::new();
    for stmt in statements(seed) {
        if let Some(rest) = stmt.strip_prefix(insert.as_str()) {
            let table = split_ident(rest).map(|(t, _)| t).unwrap_or(rest).to_owned();
            match seeds.last_mut() {
                Some((t, rows)) if *t == table => {
                    rows.push('\n');
                    rows.push_str(stmt);
                }
                _ => seeds.push((table, stmt.to_owned())),
            }
        } else if let Some(q) = parse_setval(stmt) {
            sequences.push(q);
        }
    }
    (seeds, sequences)
}

/// The statements of SQL text as pg_dump writes it (each with its `;`, comments outside
/// literals dropped): single-quoted literals with doubled quotes, double-quoted identifiers.
fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (None::<usize>, 0);
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'-' && bytes.get(i + 1) == Some(&b'-') && start.is_none() => {
                i = sql[i..].find('\n').map(|n| i + n).unwrap_or(bytes.len());
                continue;
            }
            None if b == b'\'' || b == b'"' => {
                quote = Some(b);
                start.get_or_insert(i);
            }
            None if b == b';' => {
                if let Some(s) = start.take() {
                    out.push(sql[s..=i].trim());
                }
            }
            None if !b.is_ascii_whitespace() => {
                start.get_or_insert(i);
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// `SELECT pg_catalog.setval('<schema>.<seq>', <n>, <called>);` as pg_dump writes it.
fn parse_setval(line: &str) -> Option<Sequence> {
    let rest = line.strip_prefix("SELECT pg_catalog.setval('")?;
    let mut name = String::new();
    let mut chars = rest.char_indices().peekable();
    let mut after = None;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            if chars.peek().map(|(_, n)| *n) == Some('\'') {
                chars.next();
                name.push('\'');
                continue;
            }
            after = Some(&rest[i + 1..]);
            break;
        }
        name.push(c);
    }
    let args = after?.strip_prefix(", ")?.strip_suffix(");")?;
    let (value, called) = args.split_once(", ")?;
    let value: i64 = value.trim().parse().ok()?;
    let seq = name.strip_prefix(PLACEHOLDER)?.strip_prefix('.')?.to_owned();
    Some(Sequence { name: seq, last: (called == "true").then_some(value), setval: line.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> String {
        let p = PLACEHOLDER;
        format!(
            "--\n-- Data for Name: categories; Type: TABLE DATA; Schema: {p}; Owner: -\n--\n\n\
             INSERT INTO {p}.categories VALUES\n\t(1, 'books', NULL),\n\t(2, 'line\n-- not a header', NULL);\n\n\n\
             --\n-- Data for Name: Odd Name; Type: TABLE DATA; Schema: {p}; Owner: -\n--\n\n\
             INSERT INTO {p}.\"Odd \"\" Name\" VALUES\n\t(1);\n\n\n\
             --\n-- Name: audit_log_id_seq; Type: SEQUENCE SET; Schema: {p}; Owner: -\n--\n\n\
             SELECT pg_catalog.setval('{p}.audit_log_id_seq', 1, false);\n\n\n\
             SELECT pg_catalog.setval('{p}.\"it''s\"', 42, true);\n"
        )
    }

    #[test]
    fn seed_splits_into_tables_and_sequences() {
        let (seeds, seqs) = parse_seed(&seed());
        let names: Vec<&str> = seeds.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(names, ["categories", "\"Odd \"\" Name\""]);
        assert!(seeds[0].1.ends_with("(2, 'line\n-- not a header', NULL);"), "{:?}", seeds[0].1);
        assert_eq!(seqs.len(), 2);
        assert_eq!((seqs[0].name.as_str(), seqs[0].last), ("audit_log_id_seq", None));
        assert_eq!((seqs[1].name.as_str(), seqs[1].last), ("\"it's\"", Some(42)));
    }

    #[test]
    fn reset_touches_only_what_changed() {
        let (seeds, sequences) = parse_seed(&seed());
        let mut plan = Plan {
            tracked: true,
            tables: vec!["categories".into(), "products".into(), "\"Odd \"\" Name\"".into()],
            seeds,
            sequences,
            ..Plan::default()
        };
        plan.children.insert("categories".into(), vec!["products".into()]);
        plan.triggers.insert("categories".into(), vec![("categories".into(), "audit".into(), "ENABLE ALWAYS")]);
        assert!(plan.reset_sql("s", &[], &[], true).is_none());
        let su = plan.reset_sql("s", &["categories".into()], &[], true).unwrap();
        assert!(su.contains("DELETE FROM \"s\".categories;") && !su.contains("products"), "{su}");
        assert!(su.contains("INSERT INTO s.categories") && !su.contains("DISABLE TRIGGER"), "{su}");
        let owner = plan.reset_sql("s", &["categories".into()], &["\"it's\"".into()], false).unwrap();
        assert!(owner.contains("TRUNCATE \"s\".categories, \"s\".products;"), "{owner}");
        // Without seed rows: DELETE, children first; a cycle is truncated.
        let del = plan.reset_sql("s", &["products".into()], &[], false).unwrap();
        assert!(del.contains("DELETE FROM \"s\".products;") && !del.contains("TRUNCATE"), "{del}");
        plan.forced.insert("products".into());
        let forced = plan.reset_sql("s", &["products".into()], &[], false).unwrap();
        assert!(forced.contains("TRUNCATE \"s\".products;") && !forced.contains("DELETE"), "{forced}");
        plan.forced.clear();
        plan.tables.push("x".into());
        plan.children.insert("products".into(), vec!["x".into()]);
        plan.children.insert("x".into(), vec!["products".into()]);
        let cyc = plan.reset_sql("s", &["products".into(), "x".into()], &[], false).unwrap();
        assert!(cyc.contains("TRUNCATE \"s\".products, \"s\".x;") && !cyc.contains("DELETE"), "{cyc}");
        plan.children.insert("x".into(), vec![]);
        let order = plan.reset_sql("s", &["products".into(), "x".into()], &[], false).unwrap();
        assert!(order.contains("DELETE FROM \"s\".x;\nDELETE FROM \"s\".products;"), "{order}");
        assert!(owner.contains("DISABLE TRIGGER audit;") && owner.contains("ENABLE ALWAYS TRIGGER audit;"), "{owner}");
        assert!(owner.contains("setval('s.\"it''s\"', 42, true)") && !owner.contains("audit_log_id_seq"), "{owner}");
        let seq_only = plan.reset_sql("s", &[], &["audit_log_id_seq".into()], false).unwrap();
        assert!(!seq_only.contains("TRUNCATE") && seq_only.contains("audit_log_id_seq"), "{seq_only}");
    }

    #[test]
    fn quoted_identifiers_split() {
        assert_eq!(split_ident("\"a \"\"b\" c"), Some(("\"a \"\"b\"", " c")));
        assert_eq!(split_ident("abc def"), Some(("abc", " def")));
    }
}
