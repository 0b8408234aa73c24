//! The reader's contract: every documented form is read however it is formatted, the writer's output reads
//! back to the same values, and every hostile input is refused with the right class and statement index.

use std::collections::BTreeSet;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::*;

fn allowed() -> BTreeSet<TableName> {
    ["public.product", "public.person", "public.sale_item", "shop.Mixed Case"]
        .iter()
        .map(|t| {
            let (s, n) = t.split_once('.').unwrap();
            TableName::new(s, n)
        })
        .collect()
}

fn read(text: &str) -> Result<Payload, PayloadError> {
    read_sql(text, &allowed())
}

fn refused(text: &str) -> (usize, PayloadErrorKind) {
    match read(text) {
        Ok(p) => panic!("accepted: {text}\n{p:?}"),
        Err(e) => (e.statement, e.kind),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn limits() -> ReadLimits {
    ReadLimits { max_decompressed_bytes: 1 << 20, allowed_tables: allowed() }
}

fn s(v: &str) -> Value {
    Some(v.to_string())
}

#[test]
fn every_form_reads_however_it_is_formatted() {
    let p = read(
        "-- branchsync payload v1\n-- fingerprint: abc123\n-- cursor: bs1/1/2/ab/3:4:\n\
         -- table public.product: \"id\" bigint, \"price\" numeric(12,2), \"Odd, \"\"name\"\"\" character varying(20)\n\
         /* a block /* nested */ comment */\n\
         insert   INTO Public.PRODUCT(\"id\",PRICE)values( 1 ,-2.5e3 ),\n(2,NULL)on conflict(ID)do update set price=excluded.\"price\";;\n\
         DELETE FROM product WHERE id = '7' AND \"price\" = +3;\n\
         delete from product where id in (8, 9);\n\
         DELETE FROM sale_item WHERE (sale_id, line_no) IN ((1, 2), (3, 4));\n\
         INSERT INTO \"shop\".\"Mixed Case\" (\"A\") VALUES (E'tab\\there\\n\\'q\\' \\x41\\101\\u00e9') ON CONFLICT (\"A\") DO NOTHING\n",
    )
    .unwrap();
    assert_eq!(p.header.fingerprint.as_deref(), Some("abc123"));
    assert_eq!(p.header.cursor.as_deref(), Some("bs1/1/2/ab/3:4:"));
    let (t, cols) = &p.header.tables[0];
    assert_eq!(t, &TableName::new("public", "product"));
    assert_eq!(cols[1], ColumnDecl { name: "price".into(), type_sql: "numeric(12,2)".into() });
    assert_eq!(cols[2], ColumnDecl { name: "Odd, \"name\"".into(), type_sql: "character varying(20)".into() });
    assert_eq!(p.statements.len(), 5);
    assert_eq!(
        p.statements[0],
        Statement::Upsert {
            table: TableName::new("public", "product"),
            columns: vec!["id".into(), "price".into()],
            conflict: vec!["id".into()],
            update: vec!["price".into()],
            rows: Rows::from(vec![vec![s("1"), s("-2.5e3")], vec![s("2"), None]]),
        }
    );
    assert_eq!(
        p.statements[1],
        Statement::Delete {
            table: TableName::new("public", "product"),
            key: vec!["id".into(), "price".into()],
            rows: Rows::from(vec![vec![s("7"), s("3")]])
        }
    );
    assert_eq!(
        p.statements[2],
        Statement::Delete {
            table: TableName::new("public", "product"),
            key: vec!["id".into()],
            rows: Rows::from(vec![vec![s("8")], vec![s("9")]])
        }
    );
    assert!(matches!(&p.statements[3], Statement::Delete { key, rows, .. } if key.len() == 2 && rows.len() == 2));
    match &p.statements[4] {
        Statement::Upsert { table, rows, update, .. } => {
            assert_eq!(table, &TableName::new("shop", "Mixed Case"));
            assert_eq!(rows.to_vec()[0][0].as_deref(), Some("tab\there\n'q' AAé"));
            assert!(update.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn quotes_and_backslashes_in_standard_strings_are_data() {
    let p = read("INSERT INTO person (id, name) VALUES (1, 'a'';DROP TABLE x;--'), (2, 'back\\slash') ON CONFLICT (id) DO NOTHING").unwrap();
    let Statement::Upsert { rows, .. } = &p.statements[0] else { panic!() };
    let rows = rows.to_vec();
    assert_eq!(rows[0][1].as_deref(), Some("a';DROP TABLE x;--"));
    assert_eq!(rows[1][1].as_deref(), Some("back\\slash"));
    // In an E-string \' is a quote, so the DROP below is inside the string; without E it is a statement.
    let p =
        read("INSERT INTO person (id, name) VALUES (1, E'\\'; DROP TABLE x; --') ON CONFLICT (id) DO NOTHING").unwrap();
    let Statement::Upsert { rows, .. } = &p.statements[0] else { panic!() };
    assert_eq!(rows.to_vec()[0][1].as_deref(), Some("'; DROP TABLE x; --"));
    assert_eq!(
        refused("INSERT INTO person (id, name) VALUES (1, 'a\\'); DROP TABLE x; --') ON CONFLICT (id) DO NOTHING"),
        (
            1,
            PayloadErrorKind::Malformed(
                "INSERT needs ON CONFLICT (primary key) DO UPDATE SET ... or DO NOTHING".into()
            )
        )
    );
    let (index, kind) =
        refused("INSERT INTO person (id, name) VALUES (1, 'a\\') ON CONFLICT (id) DO NOTHING; DROP TABLE x; --')");
    assert_eq!((index, kind), (2, PayloadErrorKind::Forbidden("DROP".into())));
}

#[test]
fn copy_blocks_decode_every_escape() {
    let text = "COPY product (id, name, note) FROM stdin;\n1\ta\\tb\\nc\\\\d\\r\t\\N\n2\t\\101\\x42\\\\N\té\n\\.\nDELETE FROM product WHERE id = 3;";
    let p = read(text).unwrap();
    assert_eq!(p.statements.len(), 2);
    let Statement::Upsert { rows, conflict, update, .. } = &p.statements[0] else { panic!() };
    assert!(conflict.is_empty());
    assert_eq!(update.len(), 3);
    let rows = rows.to_vec();
    assert_eq!(rows[0], vec![s("1"), s("a\tb\nc\\d\r"), None]);
    assert_eq!(rows[1], vec![s("2"), s("AB\\N"), s("é")]);
    assert!(read("COPY product (id) FROM STDIN;\n\\.\n").is_ok(), "an empty block is fine");
}

#[test]
fn the_writer_output_reads_back_to_the_same_values() {
    let table = TableName::new("public", "product");
    let cols: Vec<String> = vec!["id".into(), "name".into(), "data".into()];
    let key = vec!["id".to_string()];
    let nasty = [
        "",
        "'",
        "''",
        "\\",
        "\\'",
        "a\tb",
        "line\nbreak",
        "cr\r\nlf",
        "日本語 🛒",
        "/* x */",
        "-- y",
        "$$z$$",
        "E'\\x00'",
        ";",
    ];
    let mut w = ChunkWriter::new(
        WriterConfig { chunk_bytes: 256, rows_per_statement: 3, gzip_level: 1 },
        Some("fp".into()),
        Some("c".into()),
    );
    w.declare_table(&table, &[ColumnDecl { name: "id".into(), type_sql: "bigint".into() }]);
    let mut expected = Vec::new();
    for (i, v) in nasty.iter().enumerate() {
        let row = vec![s(&i.to_string()), s(v), if i % 3 == 0 { None } else { s(&v.repeat(2)) }];
        if i % 2 == 0 {
            w.upsert(&table, &cols, &key, &row);
        } else {
            w.copy_row(&table, &cols, &row);
        }
        expected.push(row);
    }
    w.delete(&table, &key, &[s("it's")]);
    let chunks = w.finish();
    assert!(chunks.len() > 2, "small chunks expected");
    let mut rows = Vec::new();
    let mut deleted = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let p = read_payload(c, &limits()).unwrap();
        assert_eq!(p.header.fingerprint.as_deref(), Some("fp"));
        assert_eq!(p.header.cursor.as_deref(), Some("c"), "chunk {i}");
        for st in p.statements {
            match st {
                Statement::Upsert { rows: r, .. } => rows.extend(r.iter()),
                Statement::Delete { rows: r, .. } => deleted.extend(r.iter()),
            }
        }
    }
    rows.sort_by_key(|r| r[0].clone().unwrap().parse::<i32>().unwrap());
    assert_eq!(rows, expected);
    assert_eq!(deleted, vec![vec![s("it's")]]);
}

#[test]
fn statement_kinds_outside_the_grammar_are_forbidden() {
    for (text, keyword) in [
        ("CREATE TABLE x (a int)", "CREATE"),
        ("drop table product", "DROP"),
        ("ALTER TABLE product ADD COLUMN x int", "ALTER"),
        ("TRUNCATE product", "TRUNCATE"),
        ("GRANT ALL ON product TO public", "GRANT"),
        ("SET session_replication_role = replica", "SET"),
        ("RESET ALL", "RESET"),
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "START"),
        ("COMMIT", "COMMIT"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT a", "SAVEPOINT"),
        ("SELECT pg_sleep(10)", "SELECT"),
        ("WITH x AS (DELETE FROM product) SELECT 1", "WITH"),
        ("UPDATE product SET name = 'x'", "UPDATE"),
        ("DO $$ BEGIN END $$", "DO"),
        ("CALL p()", "CALL"),
        ("VACUUM", "VACUUM"),
        ("LOCK product", "LOCK"),
        ("NOTIFY x", "NOTIFY"),
        ("EXECUTE p", "EXECUTE"),
        ("PREPARE p AS SELECT 1", "PREPARE"),
        ("MERGE INTO product USING x ON true WHEN MATCHED THEN DELETE", "MERGE"),
        ("VALUES (1)", "VALUES"),
        ("TABLE product", "TABLE"),
    ] {
        assert_eq!(refused(text), (1, PayloadErrorKind::Forbidden(keyword.into())), "{text}");
    }
    for text in [
        "\\! rm -rf /",
        "DELETE FROM product WHERE id = 1;\n\\i /etc/passwd",
        "\\connect other",
        "INSERT INTO product (id) VALUES (1) ON CONFLICT (id) DO NOTHING \\g",
    ] {
        assert!(matches!(refused(text).1, PayloadErrorKind::Forbidden(_)), "{text}");
    }
}

#[test]
fn only_literals_are_values() {
    for value in [
        "now()",
        "pg_sleep(10)",
        "(SELECT 1)",
        "'1'::int",
        "CAST('1' AS int)",
        "current_timestamp",
        "DEFAULT",
        "1+1",
        "'a'||'b'",
        "$1",
        "$$x$$",
        "X'ff'",
        "B'01'",
        "U&'d'",
        "ARRAY[1]",
        "- now()",
        "'a' 'b'",
    ] {
        let text = format!("INSERT INTO product (id) VALUES ({value}) ON CONFLICT (id) DO NOTHING");
        let (index, kind) = refused(&text);
        assert_eq!(index, 1);
        assert!(matches!(kind, PayloadErrorKind::NotLiteral(_) | PayloadErrorKind::Syntax(_)), "{value}: {kind:?}");
    }
    for cond in ["id = now()", "id = (SELECT 1)", "id = 1::int", "id = 1 OR true", "id = id"] {
        let (_, kind) = refused(&format!("DELETE FROM product WHERE {cond}"));
        assert!(matches!(kind, PayloadErrorKind::NotLiteral(_) | PayloadErrorKind::Malformed(_)), "{cond}: {kind:?}");
    }
}

#[test]
fn other_tables_and_malformed_shapes_are_refused() {
    assert_eq!(
        refused("DELETE FROM sale WHERE id = 1").1,
        PayloadErrorKind::TableNotAllowed(TableName::new("public", "sale"))
    );
    assert_eq!(
        refused("DELETE FROM other.product WHERE id = 1").1,
        PayloadErrorKind::TableNotAllowed(TableName::new("other", "product"))
    );
    assert_eq!(
        refused("COPY pg_authid (rolname) FROM STDIN;\n\\.\n").1,
        PayloadErrorKind::TableNotAllowed(TableName::new("public", "pg_authid"))
    );
    assert_eq!(refused("DELETE FROM product WHERE id = 1; DELETE FROM sale WHERE id = 1").0, 2);
    for text in [
        "DELETE FROM product",
        "DELETE FROM product WHERE id IS NULL",
        "DELETE FROM product WHERE id = NULL",
        "DELETE FROM product p WHERE id = 1",
        "DELETE FROM product WHERE id = 1 RETURNING *",
        "DELETE FROM ONLY product WHERE id = 1",
        "DELETE FROM product USING person WHERE product.id = person.id",
        "DELETE FROM product WHERE (id, x) IN ((1))",
        "INSERT INTO product (id) VALUES (1)",
        "INSERT INTO product (id) VALUES (1) RETURNING id",
        "INSERT INTO product (id) VALUES (1, 2) ON CONFLICT (id) DO NOTHING",
        "INSERT INTO product (id, id) VALUES (1, 2) ON CONFLICT (id) DO NOTHING",
        "INSERT INTO product (id) VALUES (1) ON CONFLICT (other) DO NOTHING",
        "INSERT INTO product (id) VALUES (1) ON CONFLICT ON CONSTRAINT pk DO NOTHING",
        "INSERT INTO product (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = 'x'",
        "INSERT INTO product (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.id",
        "INSERT INTO product (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n WHERE false",
        "INSERT INTO product (id, n) VALUES (1, 2) ON CONFLICT (id) DO UPDATE SET m = EXCLUDED.m",
        "INSERT INTO product AS p (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        "INSERT INTO product DEFAULT VALUES",
        "INSERT INTO product (id) SELECT 1 ON CONFLICT (id) DO NOTHING",
        "INSERT INTO product (id) OVERRIDING SYSTEM VALUE VALUES (1) ON CONFLICT (id) DO NOTHING",
        "INSERT INTO a.b.product (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
        "COPY product FROM STDIN;\n\\.\n",
        "COPY product (id) FROM STDIN; DELETE FROM product WHERE id = 1;\n\\.\n",
        "COPY product (id, name) FROM STDIN;\n1\n\\.\n",
        "COPY product (id) FROM STDIN;\n1\r\n\\.\n",
        "COPY product (id) FROM STDIN;\n\\xff\n\\.\n",
    ] {
        assert!(
            matches!(refused(text).1, PayloadErrorKind::Malformed(_) | PayloadErrorKind::TableNotAllowed(_)),
            "{text}: {:?}",
            refused(text)
        );
    }
    for text in [
        "COPY product (id) TO STDOUT",
        "COPY product (id) FROM '/etc/passwd'",
        "COPY product (id) FROM PROGRAM 'rm -rf /'",
        "COPY (SELECT 1) TO STDOUT",
    ] {
        assert!(matches!(refused(text).1, PayloadErrorKind::Forbidden(_)), "{text}");
    }
}

#[test]
fn hidden_statements_behind_comments_are_seen() {
    // Everything inside a nested comment is comment.
    assert!(read("/* /* */ ; DROP TABLE x; */ DELETE FROM product WHERE id = 1").is_ok());
    // A closed comment hides nothing after it.
    assert_eq!(refused("/* */ ; DROP TABLE x").1, PayloadErrorKind::Forbidden("DROP".into()));
    assert_eq!(
        refused("DELETE FROM product WHERE id = 1 -- ; \n; DROP TABLE x"),
        (2, PayloadErrorKind::Forbidden("DROP".into()))
    );
    assert!(matches!(refused("DELETE FROM product WHERE id = 1 /* unterminated").1, PayloadErrorKind::Syntax(_)));
    assert!(matches!(refused("DELETE FROM product WHERE id = 'open").1, PayloadErrorKind::Syntax(_)));
    assert!(matches!(refused("COPY product (id) FROM STDIN;\n1\n").1, PayloadErrorKind::Syntax(_)), "missing \\.");
}

#[test]
fn broken_oversized_and_invalid_chunks_are_refused_whole() {
    let good = gzip(b"DELETE FROM product WHERE id = 1");
    assert!(read_payload(&good, &limits()).is_ok());
    assert_eq!(read_payload(b"not gzip at all", &limits()).unwrap_err().kind, PayloadErrorKind::BadGzip);
    assert_eq!(read_payload(&good[..good.len() - 6], &limits()).unwrap_err().kind, PayloadErrorKind::BadGzip);
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk");
    assert_eq!(read_payload(&trailing, &limits()).unwrap_err().kind, PayloadErrorKind::BadGzip);
    // 1 GiB of zeros compresses to about 1 MiB; the reader stops at its cap without inflating the rest.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![b' '; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let err = read_payload(&bomb, &limits()).unwrap_err();
    assert_eq!((err.statement, err.kind), (0, PayloadErrorKind::TooLarge { limit: 1 << 20 }));
    assert_eq!(
        read_payload(&gzip(b"DELETE FROM product WHERE id = '\xff'"), &limits()).unwrap_err().kind,
        PayloadErrorKind::NotUtf8
    );
    assert!(matches!(
        read_payload(&gzip(b"DELETE FROM product WHERE id = '\0'"), &limits()).unwrap_err().kind,
        PayloadErrorKind::Syntax(_)
    ));
    assert!(matches!(refused("DELETE FROM product WHERE id = E'\\000'").1, PayloadErrorKind::Syntax(_)));
}

#[test]
fn errors_name_the_statement_with_a_short_excerpt() {
    let long = format!("DELETE FROM product WHERE id = 1;\n  DROP   TABLE\n product {}", "x".repeat(10_000));
    let err = read(&long).unwrap_err();
    assert_eq!(err.statement, 2);
    assert!(err.excerpt.starts_with("DROP TABLE product"), "{}", err.excerpt);
    assert!(err.excerpt.chars().count() <= 81);
}

#[test]
fn no_prefix_of_a_valid_payload_panics() {
    let text = "-- table public.product: \"id\" bigint\nINSERT INTO product (id, name) VALUES (1, E'a\\'b'), (2, 'c''d') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;\nCOPY product (id) FROM STDIN;\n1\n\\.\nDELETE FROM sale_item WHERE (sale_id, line_no) IN ((1, 2));\n/* é */";
    for end in 0..=text.len() {
        if text.is_char_boundary(end) {
            let _ = read(&text[..end]);
        }
    }
    // Pseudo-random bytes: never a panic.
    let mut x = 0x1234_5678u64;
    for _ in 0..2000 {
        let bytes: Vec<u8> = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"INSERTDELETCOPYFROMWHEREVALUESON ();,.='\"\\E-/*\n\t0123456789"[(x % 58) as usize]
            })
            .collect();
        let _ = read(&String::from_utf8_lossy(&bytes));
        let _ = read_payload(&bytes, &limits());
    }
}

#[test]
fn findings_of_the_second_reader_are_refused() {
    // A carriage return ends a `--` comment in PostgreSQL, so what follows it is a statement.
    assert_eq!(
        refused("DELETE FROM product WHERE id = 1; -- c\rDROP TABLE product;"),
        (2, PayloadErrorKind::Forbidden("DROP".into()))
    );
    // Name lists are bounded, so duplicate checks cannot take quadratic time on a huge list.
    let many: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
    let text = format!("INSERT INTO product ({}) VALUES (1) ON CONFLICT (c0) DO NOTHING", many.join(", "));
    assert!(matches!(refused(&text).1, PayloadErrorKind::Malformed(_)));
    assert!(matches!(refused("DELETE FROM product WHERE id = E'\\u+041'").1, PayloadErrorKind::Syntax(_)));
    assert!(matches!(
        refused("COPY product (id, name) FROM STDIN;\n1\tabc\\.\n\\.\n").1,
        PayloadErrorKind::Malformed(_)
    ));
}
