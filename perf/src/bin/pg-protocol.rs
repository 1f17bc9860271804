//! What a statement's protocol costs: the records service's point look-up and first list page
//! against the perf dataset (perf-dataset ids), through tokio-postgres either as a plain
//! `query(&str, ..)` (prepare and describe the statement, wait, then bind and execute: two
//! round trips) or as `query_typed` (parse, bind and execute at once: one round trip), which
//! is what the service sends (services/records/src/store.rs). N connections, S seconds,
//! statements per second on stdout.
//!
//! `pg-protocol --url postgres://... --mode typed --statement get --connections 8 --seconds 8`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `query(&str, ..)`: prepare, then execute.
    Untyped,
    /// `query_typed`: one round trip.
    Typed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Statement {
    /// A record by id and owner.
    Get,
    /// The newest 51 records of a user.
    List,
}

#[derive(Debug, Parser)]
#[command(
    name = "pg-protocol",
    about = "Statements per second, untyped vs typed queries"
)]
struct Args {
    /// PostgreSQL URL of the perf dataset's database.
    #[arg(long)]
    url: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, value_enum, default_value = "get")]
    statement: Statement,
    #[arg(long, default_value_t = 8)]
    connections: u64,
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// The dataset's users and records (perf-dataset --users / --records).
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
}

const GET: &str = "SELECT id, user_id, artist, name, format, catalog_number, label, record_grade, \
    sleeve_grade, has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, \
    purchased_at, price_paid, created_at, updated_at FROM records.records WHERE id = $1 AND user_id = $2";
const LIST: &str =
    "SELECT id, user_id, artist, name, format, catalog_number, label, record_grade, \
    sleeve_grade, has_insert, has_booklet, has_obi_strip, has_factory_sleeve, is_promo, notes, \
    purchased_at, price_paid, created_at, updated_at FROM records.records WHERE user_id = $1 \
    ORDER BY created_at DESC, id DESC LIMIT $2";

/// perf-dataset's deterministic ids: user `u`, record `j` (owned by user `j % users + 1`).
fn user_id(u: u64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | u128::from(u))
}

fn record_id(j: u64) -> Uuid {
    Uuid::from_u128(0x1000_0000_0000_4000_8000_0000_0000_0000 | u128::from(j))
}

async fn run_one(
    client: &tokio_postgres::Client,
    args: &Args,
    i: u64,
) -> Result<usize, tokio_postgres::Error> {
    // A multiplicative hash spreads consecutive i over the dataset.
    let j = i.wrapping_mul(2_654_435_761) % args.records + 1;
    let owner = user_id(j % args.users + 1);
    let rows = match (args.statement, args.mode) {
        (Statement::Get, Mode::Untyped) => client.query(GET, &[&record_id(j), &owner]).await?,
        (Statement::Get, Mode::Typed) => {
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&record_id(j), Type::UUID), (&owner, Type::UUID)];
            client.query_typed(GET, &params).await?
        }
        (Statement::List, Mode::Untyped) => client.query(LIST, &[&owner, &51i64]).await?,
        (Statement::List, Mode::Typed) => {
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&owner, Type::UUID), (&51i64, Type::INT8)];
            client.query_typed(LIST, &params).await?
        }
    };
    Ok(rows.len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(
        args.users > 0 && args.records > 0,
        "--users and --records must be > 0"
    );
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let (client, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        let (args, done) = (args.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c * 1_000_003;
            while Instant::now() < end {
                i += 1;
                let rows = run_one(&client, &args, i).await?;
                anyhow::ensure!(
                    rows > 0,
                    "statement {i} found nothing: is the dataset loaded?"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("a connection task panicked")??;
    }
    let rate = done.load(Ordering::Relaxed) as f64 / args.seconds.max(1) as f64;
    println!(
        "{:?} {:?}: {rate:.0} statements/s over {} connections",
        args.mode, args.statement, args.connections
    );
    Ok(())
}
