//! The sample retail schema of BRIEF §6 and a deterministic data generator: the same seed and counts give the
//! same rows on every machine, with the awkward values (quotes, newlines, non-ASCII, bytea, jsonb, NULLs) that
//! a sync must carry exactly.

use bytes::Bytes;
use futures_util::SinkExt;
use protocol::payload::push_copy_row;
use tokio_postgres::Client;

/// The sample schema. `till_session` is shop-local and in no policy.
pub const SCHEMA_SQL: &str = r#"
CREATE TABLE person (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text,
    phone text,
    note text,
    birth_date date,
    loyalty_points integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE product (
    id bigserial PRIMARY KEY,
    code text NOT NULL,
    name text NOT NULL,
    description text,
    price numeric(12,2) NOT NULL,
    cost numeric(14,4),
    active boolean NOT NULL DEFAULT true,
    image bytea,
    attributes jsonb,
    ext_id uuid,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE service (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    price numeric(12,2) NOT NULL,
    duration_minutes integer,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE parameter (
    name text PRIMARY KEY,
    value text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE sale (
    id bigserial PRIMARY KEY,
    person_id bigint REFERENCES person(id),
    sold_at timestamptz NOT NULL,
    total numeric(14,2) NOT NULL,
    status text NOT NULL,
    receipt uuid NOT NULL,
    note text
);
CREATE TABLE sale_item (
    sale_id bigint NOT NULL REFERENCES sale(id),
    line_no integer NOT NULL,
    product_id bigint REFERENCES product(id),
    service_id bigint REFERENCES service(id),
    quantity numeric(12,3) NOT NULL,
    unit_price numeric(12,2) NOT NULL,
    PRIMARY KEY (sale_id, line_no)
);
CREATE TABLE payment (
    id bigserial PRIMARY KEY,
    sale_id bigint NOT NULL REFERENCES sale(id),
    method text NOT NULL,
    amount numeric(14,2) NOT NULL,
    paid_at timestamptz NOT NULL,
    details jsonb
);
CREATE TABLE till_session (
    id serial PRIMARY KEY,
    opened_at timestamptz NOT NULL DEFAULT now(),
    note text
);
"#;

/// The retail policy's table lists, as `schema.table` names.
pub mod policy {
    /// Office → shop: the catalogue.
    pub const FROM_SOURCE: &[&str] = &["public.product", "public.service"];
    /// Shop → office: the day's activity.
    pub const FROM_TARGET: &[&str] = &["public.sale", "public.sale_item", "public.payment"];
    /// Both ways: customers.
    pub const BOTH: &[&str] = &["public.person"];
    /// Office → shop once, at branch initialisation.
    pub const INITIAL: &[&str] = &["public.parameter"];
    /// Shop-local, never synced.
    pub const LOCAL: &[&str] = &["public.till_session"];

    /// The sample retail policy, the one model every test, the demo and the benchmarks use.
    pub fn retail() -> protocol::policy::Policy {
        let names = |l: &[&str]| l.iter().filter_map(|t| protocol::payload::TableName::parse(t)).collect();
        protocol::policy::Policy {
            from_source: names(FROM_SOURCE),
            from_target: names(FROM_TARGET),
            both: names(BOTH),
            initial: names(INITIAL),
        }
    }
}

/// A small deterministic pseudo-random generator (splitmix64): no dependency, same sequence everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52 & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    fn timestamp(&mut self) -> String {
        let day = 1 + self.below(28);
        let month = 1 + self.below(12);
        let micros = self.below(1_000_000);
        format!(
            "2026-{month:02}-{day:02} {:02}:{:02}:{:02}.{micros:06}+00",
            self.below(24),
            self.below(60),
            self.below(60)
        )
    }

    fn money(&mut self, max_cents: u64) -> String {
        let cents = self.below(max_cents) + 1;
        format!("{}.{:02}", cents / 100, cents % 100)
    }
}

/// Awkward text on purpose: quotes, backslashes, tabs, newlines, SQL-looking text and non-ASCII.
const WORDS: &[&str] = &[
    "apple",
    "café",
    "crème brûlée",
    "O'Brien",
    "say \"hi\"",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "日本語",
    "Ελληνικά",
    "emoji 🛒",
    "'); DROP TABLE sale; --",
    "$$dollar$$",
    "E'\\x00'",
    "naïve",
    "ß",
    "carriage\r\nreturn",
    "semi;colon",
    "/* not a comment */",
    "-- nor this",
];

fn phrase(rng: &mut Rng, words: u64) -> String {
    (0..1 + rng.below(words)).map(|_| rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
}

/// One generated row in column order, values as PostgreSQL text (None = NULL).
pub type Row = Vec<Option<String>>;

/// Columns of `product` in generator order.
pub const PRODUCT_COLUMNS: &[&str] =
    &["id", "code", "name", "description", "price", "cost", "active", "image", "attributes", "ext_id", "updated_at"];

/// A product row with the given id.
pub fn product_row(rng: &mut Rng, id: i64) -> Row {
    let image = rng.chance(30).then(|| {
        let n = rng.below(24) as usize;
        let mut s = String::from("\\x");
        for _ in 0..n {
            s.push_str(&format!("{:02x}", rng.below(256)));
        }
        s
    });
    let attributes = rng.chance(70).then(|| {
        format!(
            r#"{{"colour": "{}", "size": {}, "tags": ["{}", null, true], "note": "quote \" and \\ and é"}}"#,
            rng.pick(&["red", "blue", "vert", "青"]),
            rng.below(50),
            rng.pick(&["new", "sale", "bio"])
        )
    });
    vec![
        Some(id.to_string()),
        Some(format!("P{id:08}")),
        Some(phrase(rng, 3)),
        rng.chance(60).then(|| phrase(rng, 8)),
        Some(rng.money(100_000)),
        rng.chance(80).then(|| format!("{}.{:04}", rng.below(1000), rng.below(10_000))),
        Some(if rng.chance(90) { "t" } else { "f" }.into()),
        image,
        attributes,
        rng.chance(80).then(|| rng.uuid()),
        Some(rng.timestamp()),
    ]
}

/// Columns of `person` in generator order.
pub const PERSON_COLUMNS: &[&str] =
    &["id", "name", "email", "phone", "note", "birth_date", "loyalty_points", "updated_at"];

/// A person row with the given id.
pub fn person_row(rng: &mut Rng, id: i64) -> Row {
    vec![
        Some(id.to_string()),
        Some(phrase(rng, 3)),
        rng.chance(70).then(|| format!("customer{id}@example.com")),
        rng.chance(50).then(|| format!("+33 6 {:08}", rng.below(100_000_000))),
        rng.chance(30).then(|| phrase(rng, 6)),
        rng.chance(40)
            .then(|| format!("19{:02}-{:02}-{:02}", 40 + rng.below(60), 1 + rng.below(12), 1 + rng.below(28))),
        Some(rng.below(5000).to_string()),
        Some(rng.timestamp()),
    ]
}

/// Loads `rows` into `table (columns)` with one COPY.
pub async fn copy_rows(
    client: &Client,
    table: &str,
    columns: &[&str],
    rows: impl IntoIterator<Item = Row>,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(&format!("COPY {table} ({}) FROM STDIN", columns.join(", "))).await?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = String::with_capacity(1 << 20);
    for row in rows {
        push_copy_row(&mut buf, &row);
        buf.push('\n');
        if buf.len() > (1 << 20) {
            sink.send(Bytes::from(std::mem::take(&mut buf))).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf)).await?;
    }
    sink.finish().await
}

/// Sizes of a generated office data set.
#[derive(Debug, Clone, Copy)]
pub struct OfficeData {
    /// Seed of the generator.
    pub seed: u64,
    /// Products.
    pub products: i64,
    /// Services.
    pub services: i64,
    /// Customers.
    pub persons: i64,
    /// Parameters.
    pub parameters: i64,
}

/// Creates the sample schema in an empty database.
pub async fn create_schema(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(SCHEMA_SQL).await
}

/// Loads the office's catalogue, customers and parameters, and moves the sequences past the loaded ids.
pub async fn load_office(client: &Client, data: OfficeData) -> Result<(), tokio_postgres::Error> {
    let mut rng = Rng::new(data.seed);
    let products: Vec<Row> = (1..=data.products).map(|id| product_row(&mut rng, id)).collect();
    copy_rows(client, "product", PRODUCT_COLUMNS, products).await?;
    let services: Vec<Row> = (1..=data.services)
        .map(|id| {
            vec![
                Some(id.to_string()),
                Some(phrase(&mut rng, 3)),
                Some(rng.money(20_000)),
                rng.chance(70).then(|| (15 * (1 + rng.below(8))).to_string()),
                Some(rng.timestamp()),
            ]
        })
        .collect();
    copy_rows(client, "service", &["id", "name", "price", "duration_minutes", "updated_at"], services).await?;
    let persons: Vec<Row> = (1..=data.persons).map(|id| person_row(&mut rng, id)).collect();
    copy_rows(client, "person", PERSON_COLUMNS, persons).await?;
    let params: Vec<Row> = (1..=data.parameters)
        .map(|i| {
            vec![
                Some(format!("param.{i}.{}", rng.pick(&["tax", "Währung", "receipt header"]))),
                rng.chance(90).then(|| phrase(&mut rng, 5)),
                Some(rng.timestamp()),
            ]
        })
        .collect();
    copy_rows(client, "parameter", &["name", "value", "updated_at"], params).await?;
    client
        .batch_execute(
            "SELECT setval('product_id_seq', greatest((SELECT max(id) FROM product), 1));
             SELECT setval('service_id_seq', greatest((SELECT max(id) FROM service), 1));
             SELECT setval('person_id_seq', greatest((SELECT max(id) FROM person), 1));",
        )
        .await
}

/// Records `count` sales at a shop, each with 1–4 items and a payment, taking ids from the shop's sequences
/// (so they fall in the shop's id range once `setidstart` ran). Product and service ids are drawn from
/// `1..=max_product` and `1..=max_service`; customers from `1..=max_person` (or none). Returns the rows written.
pub async fn sell(
    client: &Client,
    seed: u64,
    count: i64,
    max_product: i64,
    max_service: i64,
    max_person: i64,
) -> Result<u64, tokio_postgres::Error> {
    if count <= 0 {
        return Ok(0);
    }
    let mut rng = Rng::new(seed);
    let ids: Vec<i64> = client
        .query("SELECT nextval('sale_id_seq') FROM generate_series(1, $1::bigint)", &[&count])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sales = Vec::new();
    let mut items = Vec::new();
    let mut payments = Vec::new();
    for &id in &ids {
        let mut total_cents = 0u64;
        for line in 1..=(1 + rng.below(4)) {
            let unit = 1 + rng.below(10_000);
            let qty = 1 + rng.below(3);
            total_cents += unit * qty;
            let (product, service) = if max_service > 0 && rng.chance(20) {
                (None, Some((1 + rng.below(max_service as u64)).to_string()))
            } else {
                (Some((1 + rng.below(max_product.max(1) as u64)).to_string()), None)
            };
            items.push(vec![
                Some(id.to_string()),
                Some(line.to_string()),
                product,
                service,
                Some(format!("{qty}.000")),
                Some(format!("{}.{:02}", unit / 100, unit % 100)),
            ]);
        }
        let total = format!("{}.{:02}", total_cents / 100, total_cents % 100);
        let person = (max_person > 0 && rng.chance(40)).then(|| (1 + rng.below(max_person as u64)).to_string());
        let ts = rng.timestamp();
        sales.push(vec![
            Some(id.to_string()),
            person,
            Some(ts.clone()),
            Some(total.clone()),
            Some("paid".into()),
            Some(rng.uuid()),
            rng.chance(10).then(|| phrase(&mut rng, 4)),
        ]);
        payments.push(vec![
            Some(id.to_string()),
            Some(rng.pick(&["cash", "card", "chèque"]).into()),
            Some(total),
            Some(ts),
            rng.chance(50)
                .then(|| format!(r#"{{"terminal": {}, "auth": "{:06}"}}"#, rng.below(9), rng.below(1_000_000))),
        ]);
    }
    let mut n =
        copy_rows(client, "sale", &["id", "person_id", "sold_at", "total", "status", "receipt", "note"], sales).await?;
    n += copy_rows(
        client,
        "sale_item",
        &["sale_id", "line_no", "product_id", "service_id", "quantity", "unit_price"],
        items,
    )
    .await?;
    n += copy_rows(client, "payment", &["sale_id", "method", "amount", "paid_at", "details"], payments).await?;
    Ok(n)
}
