//! Migrations and the checked-in diesel schema.

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use portfolio_tests::TestDb;

#[derive(QueryableByName, Debug)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName, Debug)]
struct KeyColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = Integer)]
    n: i32,
}

/// A table as schema.rs declares it: name, `(column, diesel type)` pairs, primary key.
type DeclaredTable = (String, Vec<(String, String)>, Vec<String>);

/// The tables declared in the text of schema.rs.
fn parse_schema_rs(text: &str) -> Vec<DeclaredTable> {
    let mut tables = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("diesel::table! {") {
        rest = &rest[start + "diesel::table! {".len()..];
        let header_end = rest.find('{').expect("table body");
        let header = rest[..header_end].trim();
        let (name, keys) = header.split_once('(').expect("table (keys)");
        let keys = keys.trim_end_matches(')').split(',').map(|k| k.trim().to_owned()).collect();
        let body_end = rest.find('}').expect("end of table");
        let columns = rest[header_end + 1..body_end]
            .lines()
            .filter_map(|l| l.trim().trim_end_matches(',').split_once("->"))
            .map(|(c, t)| (c.trim().to_owned(), t.trim().to_owned()))
            .collect();
        tables.push((name.trim().to_owned(), columns, keys));
        rest = &rest[body_end..];
    }
    tables
}

fn diesel_type(pg: &str) -> &'static str {
    match pg {
        "uuid" => "Uuid",
        "text" => "Text",
        "jsonb" => "Jsonb",
        "json" => "Json",
        "bigint" => "Int8",
        "integer" => "Int4",
        "boolean" => "Bool",
        "double precision" => "Float8",
        "timestamp with time zone" => "Timestamptz",
        // The one array column is `api_keys.scopes`, of text.
        "ARRAY" => "Array<Text>",
        other => panic!("no diesel mapping written for Postgres type {other}"),
    }
}

#[test]
fn migrations_apply_to_an_empty_database_once_even_when_run_concurrently() {
    let db = TestDb::empty();
    let url = db.url.clone();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || portfolio_shared::db::migrate(&url).expect("migrate"))
        })
        .collect();
    let applied: Vec<Vec<String>> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "exactly one run applied them: {applied:?}"
    );
    assert!(portfolio_shared::db::migrate(&url).unwrap().is_empty(), "a second migrate is a no-op");
}

#[test]
fn the_checked_in_diesel_schema_matches_the_migrated_database() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text
         FROM information_schema.columns c
         JOIN pg_class k ON k.relname = c.table_name
         JOIN pg_namespace n ON n.oid = k.relnamespace AND n.nspname = c.table_schema
         WHERE c.table_schema = 'public' AND NOT k.relispartition
           AND c.table_name NOT LIKE '\\_\\_diesel%'
         ORDER BY c.table_name, c.ordinal_position",
    )
    .load(&mut conn)
    .unwrap();
    let keys: Vec<KeyColumn> = diesel::sql_query(
        "SELECT t.relname::text AS table_name, a.attname::text AS column_name
         FROM pg_constraint k
         JOIN pg_class t ON t.oid = k.conrelid
         JOIN unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord) ON true
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum
         WHERE k.contype = 'p' AND NOT t.relispartition
           AND t.relnamespace = 'public'::regnamespace AND t.relname NOT LIKE '\\_\\_diesel%'
         ORDER BY t.relname, u.ord",
    )
    .load(&mut conn)
    .unwrap();

    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/src/schema.rs"))
            .unwrap();
    let declared = parse_schema_rs(&text);
    let mut tables: Vec<String> = columns.iter().map(|c| c.table_name.clone()).collect();
    tables.dedup();
    assert_eq!(declared.iter().map(|t| t.0.clone()).collect::<Vec<_>>(), tables, "tables");
    for (table, declared_columns, declared_keys) in declared {
        let actual: Vec<(String, String)> = columns
            .iter()
            .filter(|c| c.table_name == table)
            .map(|c| {
                let t = diesel_type(&c.data_type);
                let t =
                    if c.is_nullable == "YES" { format!("Nullable<{t}>") } else { t.to_owned() };
                (c.column_name.clone(), t)
            })
            .collect();
        assert_eq!(declared_columns, actual, "columns of {table}");
        let actual_keys: Vec<String> =
            keys.iter().filter(|k| k.table_name == table).map(|k| k.column_name.clone()).collect();
        assert_eq!(declared_keys, actual_keys, "primary key of {table}");
    }
}

#[test]
fn audit_partitions_exist_ahead_and_a_late_partition_adopts_rows_from_the_default() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let ahead: Count = diesel::sql_query(
        "SELECT count(*)::int AS n FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'audit_logs'::regclass AND c.relname <> 'audit_logs_default'",
    )
    .get_result(&mut conn)
    .unwrap();
    assert!(ahead.n >= 3, "this month and the next two: {}", ahead.n);
    // A row for a month without a partition lands in the default partition instead of failing.
    diesel::sql_query(
        "INSERT INTO audit_logs (simulation_id, event, actor, created_at)
         VALUES (gen_random_uuid(), 'submitted', 'api', now() + interval '14 months')",
    )
    .execute(&mut conn)
    .unwrap();
    let in_default: Count = diesel::sql_query("SELECT count(*)::int AS n FROM audit_logs_default")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(in_default.n, 1);
    diesel::sql_query("SELECT ensure_audit_log_partition((now() + interval '14 months')::date)")
        .execute(&mut conn)
        .unwrap();
    let in_default: Count = diesel::sql_query("SELECT count(*)::int AS n FROM audit_logs_default")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(in_default.n, 0, "the new partition took the row");
    let total: Count = diesel::sql_query("SELECT count(*)::int AS n FROM audit_logs")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(total.n, 1);
}

#[derive(QueryableByName)]
struct Compression {
    #[diesel(sql_type = Text)]
    column: String,
    #[diesel(sql_type = Text)]
    method: String,
}

/// Results are stored with lz4 (pglz was ~0.4 ms of storing one); the servers this project
/// supports (Postgres 14+ as Debian and RDS build it) have it, so here the migration applies.
#[test]
fn results_are_compressed_with_lz4() {
    let db = TestDb::migrated();
    let mut conn = db.connect();
    let methods: Vec<Compression> = diesel::sql_query(
        "SELECT attrelid::regclass::text || '.' || attname AS column, attcompression::text AS method \
         FROM pg_attribute \
         WHERE attname IN ('result', 'document') \
           AND attrelid IN ('simulation_results'::regclass, 'sweep_cells'::regclass) \
         ORDER BY 1",
    )
    .load(&mut conn)
    .unwrap();
    let methods: Vec<(String, String)> =
        methods.into_iter().map(|c| (c.column, c.method)).collect();
    assert_eq!(
        methods,
        [
            ("simulation_results.document".to_owned(), "l".to_owned()),
            ("simulation_results.result".to_owned(), "l".to_owned()),
            ("sweep_cells.result".to_owned(), "l".to_owned()),
        ]
    );
}
