//! `perf-dataset`: loads the records dataset of the data-layer benchmark (default 1M records
//! across 1k users) into a database that already has the records schema
//! (`records migrate --database-url ...`), with `COPY`.
//!
//! Identifiers are deterministic so pgbench scripts can address rows without a lookup:
//! user `u` (1-based) is `00000000-0000-4000-8000-<u as 12 hex digits>`, record `j` is
//! `10000000-0000-4000-8000-<j as 12 hex digits>` and belongs to user `(j % users) + 1`.
//! Secondary indexes are dropped during the load and rebuilt after it (much faster than
//! maintaining a GIN index row by row; on every partition when the table is partitioned),
//! then the table is analysed. A table comment records
//! what was loaded, so a second run with the same parameters does nothing (`--force` reloads).

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures::SinkExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

#[derive(Debug, Parser)]
#[command(
    name = "perf-dataset",
    about = "Load the 1M-record benchmark dataset with COPY"
)]
struct Args {
    /// postgres://user:password@host:port/database (the schema must exist).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Reload even if the table says it already holds this dataset.
    #[arg(long)]
    force: bool,
}

const ADJECTIVES: &[&str] = &[
    "Velvet", "Electric", "Silent", "Golden", "Crimson", "Midnight", "Broken", "Neon", "Wild",
    "Lunar", "Hollow", "Frozen", "Burning", "Secret", "Distant", "Cosmic", "Paper", "Iron",
    "Glass", "Blue", "Black", "Sonic", "Happy", "Lonely", "Royal", "Savage", "Gentle", "Atomic",
    "Crystal", "Sacred",
];
const NOUNS: &[&str] = &[
    "Comets",
    "Wolves",
    "Horizons",
    "Machines",
    "Shadows",
    "Rivers",
    "Echoes",
    "Tigers",
    "Dreamers",
    "Satellites",
    "Ghosts",
    "Harbours",
    "Prophets",
    "Strangers",
    "Engines",
    "Lanterns",
    "Pilots",
    "Orchids",
    "Monks",
    "Ravens",
    "Sailors",
    "Giants",
    "Mirrors",
    "Painters",
    "Bandits",
];
const TITLE_WORDS: &[&str] = &[
    "Night",
    "Summer",
    "Love",
    "Heart",
    "Fire",
    "Rain",
    "Road",
    "City",
    "Dream",
    "Ocean",
    "Winter",
    "Light",
    "Dance",
    "Storm",
    "Home",
    "Garden",
    "Motion",
    "Gravity",
    "Silence",
    "Forever",
    "Café",
    "Señorita",
    "Électrique",
    "Déjà",
    "Über",
];
const LABELS: &[&str] = &[
    "Blue Note",
    "Warp",
    "Factory",
    "Sub Pop",
    "Rough Trade",
    "Motown",
    "Stax",
    "Island",
    "Mute",
    "4AD",
    "Matador",
    "Domino",
    "Ninja Tune",
    "Impulse!",
    "ECM",
    "Def Jam",
    "XL",
    "Creation",
    "Merge",
    "Verve",
];
const FORMATS: &[&str] = &[
    "LP", "2xLP", "12\"", "7\"", "EP", "CD", "Cassette", "Box Set",
];
const GRADES: &[&str] = &["M", "NM", "VG+", "VG", "G+", "G", "F", "P"];

fn user_uuid(u: u64) -> String {
    format!("00000000-0000-4000-8000-{u:012x}")
}

fn record_uuid(j: u64) -> String {
    format!("10000000-0000-4000-8000-{j:012x}")
}

const COLUMNS: &str = "id, user_id, artist, name, format, catalog_number, label, record_grade, \
    sleeve_grade, has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, \
    purchased_at, price_paid, created_at, updated_at";

fn bool_text(b: bool) -> &'static str {
    if b {
        "t"
    } else {
        "f"
    }
}

/// One row in COPY text format (the generated values contain no tab, newline or backslash).
fn row(out: &mut BytesMut, rng: &mut StdRng, j: u64, users: u64) {
    let user = (j % users) + 1;
    let pick = |rng: &mut StdRng, list: &[&'static str]| -> &'static str {
        list.choose(rng).copied().unwrap_or("x")
    };
    let artist = format!("{} {}", pick(rng, ADJECTIVES), pick(rng, NOUNS));
    let name = if rng.random_bool(0.5) {
        format!("{} {}", pick(rng, TITLE_WORDS), pick(rng, TITLE_WORDS))
    } else {
        format!(
            "{} of the {}",
            pick(rng, TITLE_WORDS),
            pick(rng, NOUNS).trim_end_matches('s')
        )
    };
    let catalog = if rng.random_bool(0.8) {
        format!(
            "{}{}-{}",
            (b'A' + rng.random_range(0..26u8)) as char,
            (b'A' + rng.random_range(0..26u8)) as char,
            rng.random_range(100..99_999u32)
        )
    } else {
        "\\N".to_string()
    };
    let label = if rng.random_bool(0.9) {
        pick(rng, LABELS).to_string()
    } else {
        "\\N".to_string()
    };
    let grade = |rng: &mut StdRng| {
        if rng.random_bool(0.85) {
            pick(rng, GRADES)
        } else {
            "\\N"
        }
    };
    let record_grade = grade(rng);
    let sleeve_grade = grade(rng);
    let notes = if rng.random_bool(0.2) {
        format!(
            "Bought at a {} fair, {} pressing",
            pick(rng, TITLE_WORDS).to_lowercase(),
            pick(rng, ADJECTIVES).to_lowercase()
        )
    } else {
        "\\N".to_string()
    };
    // Created over ~5 years before 2026-01-01, in record order (so newer ids are newer rows).
    let created_s = 1_609_459_200 + (j * 157_680_000 / 1_000_000).min(157_680_000);
    let created = chrono::DateTime::from_timestamp(created_s as i64, 0).unwrap_or_default();
    let purchased = if rng.random_bool(0.7) {
        (created - chrono::Duration::days(rng.random_range(0..365)))
            .format("%Y-%m-%d")
            .to_string()
    } else {
        "\\N".to_string()
    };
    let price = if rng.random_bool(0.8) {
        format!(
            "{}.{:02}",
            rng.random_range(1..200u32),
            rng.random_range(0..100u32)
        )
    } else {
        "\\N".to_string()
    };
    let ts = created.format("%Y-%m-%d %H:%M:%S+00").to_string();
    let line = format!(
        "{}\t{}\t{artist}\t{name}\t{}\t{catalog}\t{label}\t{record_grade}\t{sleeve_grade}\t{}\t{}\t{}\t{}\t{}\t{notes}\t{purchased}\t{price}\t{ts}\t{ts}\n",
        record_uuid(j),
        user_uuid(user),
        pick(rng, FORMATS),
        bool_text(rng.random_bool(0.3)),
        bool_text(rng.random_bool(0.2)),
        bool_text(rng.random_bool(0.05)),
        bool_text(rng.random_bool(0.4)),
        bool_text(rng.random_bool(0.03)),
    );
    out.put_slice(line.as_bytes());
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (client, connection) = tokio_postgres::connect(&args.database_url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("perf-dataset: connection error: {e}");
        }
    });
    let marker = format!(
        "perf-dataset users={} records={} seed={}",
        args.users, args.records, args.seed
    );
    let current: Option<String> = client
        .query_one(
            "SELECT obj_description('records.records'::regclass, 'pg_class')",
            &[],
        )
        .await
        .context("the records schema is missing: run `records migrate --database-url ...` first")?
        .get(0);
    if current.as_deref() == Some(marker.as_str()) && !args.force {
        println!("perf-dataset: already loaded ({marker}); --force reloads");
        return Ok(());
    }
    let started = Instant::now();
    client
        .batch_execute(
            "TRUNCATE records.records, records.cache_versions; \
             COMMENT ON TABLE records.records IS NULL",
        )
        .await?;
    let indexes: Vec<(String, String)> = client
        .query(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i \
             JOIN pg_class c ON c.relname = i.indexname \
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname \
             WHERE i.schemaname = 'records' AND i.tablename = 'records' \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (name, _) in &indexes {
        client
            .batch_execute(&format!("DROP INDEX records.\"{name}\""))
            .await?;
    }
    let sink = client
        .copy_in(&format!("COPY records.records ({COLUMNS}) FROM STDIN"))
        .await?;
    futures::pin_mut!(sink);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut buf = BytesMut::with_capacity(1 << 20);
    for j in 1..=args.records {
        row(&mut buf, &mut rng, j, args.users);
        if buf.len() >= 1 << 20 {
            let chunk: Bytes = buf.split().freeze();
            sink.send(chunk).await?;
        }
        if j % 200_000 == 0 {
            eprintln!("perf-dataset: {j} rows sent");
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await?;
    }
    let copied = sink.finish().await?;
    eprintln!(
        "perf-dataset: {copied} rows copied in {:.1} s; rebuilding {} index(es)",
        started.elapsed().as_secs_f64(),
        indexes.len()
    );
    client
        .batch_execute("SET maintenance_work_mem = '1GB'")
        .await?;
    for (name, def) in &indexes {
        let t = Instant::now();
        // A partitioned table's index definition reads `ON ONLY records.records`, which would
        // recreate it on the parent alone (invalid, no partition indexes); without ONLY it is
        // built on every partition and attached.
        let def = def.replacen(" ON ONLY ", " ON ", 1);
        client.batch_execute(&def).await?;
        eprintln!(
            "perf-dataset: index {name} built in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    client
        .batch_execute(&format!(
            "INSERT INTO records.cache_versions (user_id, version) \
             SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(u), 12, '0'))::uuid, 1 \
             FROM generate_series(1, {users}) AS u",
            users = args.users
        ))
        .await?;
    // VACUUM refuses to run inside the implicit transaction of a multi-statement string.
    client
        .batch_execute("VACUUM ANALYZE records.records")
        .await?;
    client
        .batch_execute("ANALYZE records.cache_versions")
        .await?;
    client
        .batch_execute(&format!("COMMENT ON TABLE records.records IS '{marker}'"))
        .await?;
    println!(
        "perf-dataset: {} records for {} users loaded in {:.1} s",
        copied,
        args.users,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
