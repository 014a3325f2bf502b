//! What every benchmark shares: the PostgreSQL profile it measures against, the refusal to
//! measure a non-durable one (benchmarks report what a user gets: fsync and synchronous commit
//! on) unless `BENCH_ALLOW_NON_DURABLE=1` says the run is a quick look, not a record, and the
//! `COPY` baseline the pull benchmarks are compared with, and the small figures helpers they
//! print with.

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The server settings a benchmark prints and checks.
#[derive(Debug, Clone, QueryableByName)]
pub struct PgProfile {
    #[diesel(sql_type = Text)]
    pub fsync: String,
    #[diesel(sql_type = Text)]
    pub synchronous_commit: String,
    #[diesel(sql_type = Text)]
    pub full_page_writes: String,
    #[diesel(sql_type = Text)]
    pub server_version: String,
    #[diesel(sql_type = Text)]
    pub data_directory: String,
    #[diesel(sql_type = Text)]
    pub wal_sync_method: String,
    #[diesel(sql_type = Text)]
    pub commit_delay: String,
}

impl PgProfile {
    /// fsync, synchronous commit and full-page writes all on.
    pub fn durable(&self) -> bool {
        self.fsync == "on" && self.synchronous_commit == "on" && self.full_page_writes == "on"
    }

    /// `durable (fsync=on …)` or `NOT DURABLE (…)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (fsync={} synchronous_commit={} full_page_writes={})",
            if self.durable() {
                "durable"
            } else {
                "NOT DURABLE"
            },
            self.fsync,
            self.synchronous_commit,
            self.full_page_writes
        )
    }
}

/// The connected server's profile.
pub async fn pg_profile(conn: &mut AsyncPgConnection) -> anyhow::Result<PgProfile> {
    Ok(diesel::sql_query(
        "SELECT current_setting('fsync') AS fsync, \
                current_setting('synchronous_commit') AS synchronous_commit, \
                current_setting('full_page_writes') AS full_page_writes, \
                current_setting('server_version') AS server_version, \
                current_setting('data_directory') AS data_directory, \
                current_setting('wal_sync_method') AS wal_sync_method, \
                current_setting('commit_delay') AS commit_delay",
    )
    .get_result(conn)
    .await?)
}

/// The number in the environment variable `name` (a quick look's smaller size), else `default`.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How old the topics of tests and other benchmarks must be before a benchmark deletes them.
const LEFTOVER_TOPICS_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes the topics tests and benchmarks left on the stack's Kafka over ten minutes ago:
/// the broker's cost grows with its partitions, and a benchmark measures its own. The broker
/// closes, renames and removes a deleted partition's files after the call returns (a `make
/// test` leaves thousands: about 15 s of a busy broker), so when it deleted any it then waits
/// for a quiet machine (two seconds under 25 % busy, at most 120 s) before the benchmark
/// measures anything.
pub async fn purge_leftover_topics() {
    let deleted =
        crate::purge_stale_test_topics(crate::kafka_bootstrap(), LEFTOVER_TOPICS_AFTER).await;
    if deleted > 0 {
        wait_for_quiet_machine().await;
    }
}

/// The niceness a benchmark's load generator runs at ([`load_generator_runtime`]).
pub const LOAD_GENERATOR_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority to [`LOAD_GENERATOR_NICE`] (Linux: nice is
/// per thread); `on_thread_start` of [`load_generator_runtime`]. The senders a
/// benchmark stands in for (Fyle's and Intuit's servers) do not share our two cores: at equal
/// priority the generator's own wake-ups queued in front of the service's on a busy machine.
/// It still sends on its schedule when the machine has room, and the benchmarks report latency
/// from each request's scheduled time too, so a generator that fell behind shows. Best effort:
/// a refusal is printed and the thread runs at its normal priority.
fn yield_cpu_to_the_system() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), LOAD_GENERATOR_NICE) {
        eprintln!(
            "bench: could not lower the load generator's priority ({e}); it runs at normal priority"
        );
    }
}

/// A runtime for a benchmark's load generator: `threads` workers named `name`, each at
/// [`LOAD_GENERATOR_NICE`] (set with `setpriority` as the thread starts). Build it, and shut it
/// down, outside async code.
pub fn load_generator_runtime(
    name: &str,
    threads: usize,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .on_thread_start(yield_cpu_to_the_system)
        .enable_all()
        .build()
}

/// The machine counts as quiet below this share of its CPU time busy, two seconds running.
const QUIET_BUSY_PCT: f64 = 25.0;
/// How long [`purge_leftover_topics`] waits for a quiet machine at most.
const QUIET_WAIT_AT_MOST: std::time::Duration = std::time::Duration::from_secs(120);

/// The machine's busy and total CPU ticks since boot (`/proc/stat`'s first line: user nice
/// system idle iowait irq softirq steal; idle and iowait are not busy), or `None` off Linux.
pub fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Waits, at most [`QUIET_WAIT_AT_MOST`], until two consecutive one-second windows each find
/// the machine less than [`QUIET_BUSY_PCT`] busy, and says how long it waited (a benchmark must
/// not measure another run's clean-up). Returns at once where `/proc/stat` cannot be read.
async fn wait_for_quiet_machine() {
    let started = std::time::Instant::now();
    let mut quiet_windows = 0;
    let mut last_pct = f64::NAN;
    let Some(mut before) = machine_cpu_ticks() else {
        return;
    };
    while quiet_windows < 2 && started.elapsed() < QUIET_WAIT_AT_MOST {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let Some(after) = machine_cpu_ticks() else {
            return;
        };
        // proc(5): iowait may go down, so the differences saturate.
        let (busy, total) = (
            after.0.saturating_sub(before.0),
            after.1.saturating_sub(before.1),
        );
        last_pct = 100.0 * busy as f64 / total.max(1) as f64;
        quiet_windows = if last_pct < QUIET_BUSY_PCT {
            quiet_windows + 1
        } else {
            0
        };
        before = after;
    }
    println!(
        "waited {:.0} s for a quiet machine before measuring (last second {last_pct:.0}% busy{})",
        started.elapsed().as_secs_f64(),
        if quiet_windows < 2 {
            "; gave up waiting"
        } else {
            ""
        }
    );
}

/// Connects to the stack's PostgreSQL ([`crate::admin_database_url`]), prints its profile and
/// refuses a non-durable one ([`require_durable`]); the profile, for the JSON line. Benchmarks
/// call it first, so it also runs [`purge_leftover_topics`].
pub async fn durable_postgres(make_target: &str) -> anyhow::Result<PgProfile> {
    use anyhow::Context as _;
    use diesel_async::AsyncConnection as _;
    purge_leftover_topics().await;
    let admin_url = crate::admin_database_url();
    let mut admin = AsyncPgConnection::establish(&admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url} (is the stack up? make stack-up)"))?;
    let pg = pg_profile(&mut admin).await?;
    println!(
        "PostgreSQL {} on {admin_url}: {}",
        pg.server_version,
        pg.describe()
    );
    require_durable(&pg, make_target)?;
    Ok(pg)
}

/// Fails unless `profile` is durable or `BENCH_ALLOW_NON_DURABLE=1`.
pub fn require_durable(profile: &PgProfile, make_target: &str) -> anyhow::Result<()> {
    if profile.durable() || std::env::var("BENCH_ALLOW_NON_DURABLE").as_deref() == Ok("1") {
        return Ok(());
    }
    anyhow::bail!(
        "PostgreSQL is not in the durable profile ({}); benchmarks measure durable commits. \
         Run `{make_target}` (deploy/stack.sh up in the durable profile) or set \
         BENCH_ALLOW_NON_DURABLE=1 to measure anyway",
        profile.describe()
    )
}

/// The pull benchmarks' baseline: one `COPY … FROM STDIN` of the rows a sync stored for
/// `workspace_id` in `table` (`schema.table`; `columns` comma-separated) into a table of the same
/// shape (`LIKE … INCLUDING ALL`: columns, defaults, unique keys and indexes), the rows rendered
/// as COPY text before the clock starts; with `checkpoint_first`, a `CHECKPOINT` runs just
/// before the clock too (so the COPY does not pay for the pages its own set-up dirtied);
/// returns (rows, rows per second).
pub async fn copy_baseline(
    database_url: &str,
    table: &str,
    columns: &str,
    workspace_id: i64,
    checkpoint_first: bool,
) -> anyhow::Result<(usize, f64)> {
    use futures::{SinkExt as _, TryStreamExt as _};
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS public.bench_copy; \
             CREATE TABLE public.bench_copy (LIKE {table} INCLUDING ALL)"
        ))
        .await?;
    let copy_out = client
        .copy_out(&format!(
            "COPY (SELECT {columns} FROM {table} WHERE workspace_id = {workspace_id}) TO STDOUT"
        ))
        .await?;
    let chunks: Vec<bytes::Bytes> = copy_out.try_collect().await?;
    let rows = chunks
        .iter()
        .map(|c| c.iter().filter(|b| **b == b'\n').count())
        .sum();
    if checkpoint_first {
        client.batch_execute("CHECKPOINT").await?;
    }
    let started = std::time::Instant::now();
    let sink = client
        .copy_in(&format!("COPY public.bench_copy ({columns}) FROM STDIN"))
        .await?;
    futures::pin_mut!(sink);
    for chunk in chunks {
        sink.send(chunk).await?;
    }
    sink.finish().await?;
    let seconds = started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE public.bench_copy").await?;
    Ok((rows, rows as f64 / seconds))
}

/// Runs a benchmark's `run` on a runtime of two worker threads (the machine's cores), the
/// services it starts included.
pub fn run_on_two_threads<F: std::future::Future<Output = anyhow::Result<()>>>(
    run: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run)
}

/// The `p`th percentile (0–100) of `sorted` by nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `x` to three decimals, for the JSON line.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Adds the fields of `figures` (an object) to `line` (an object).
pub fn merge(line: &mut serde_json::Value, figures: serde_json::Value) {
    if let (Some(line), serde_json::Value::Object(figures)) = (line.as_object_mut(), figures) {
        line.extend(figures);
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The count `sql` answers (a query selecting `count(*) AS n`).
pub async fn count(db: &mut AsyncPgConnection, sql: &str) -> anyhow::Result<i64> {
    let c: Count = diesel::sql_query(sql).get_result(db).await?;
    Ok(c.n)
}

/// Polls `sql` (a [`count`]) until it reaches `at_least`; fails after `limit`, naming `what`.
pub async fn wait_count(
    db: &mut AsyncPgConnection,
    sql: &str,
    at_least: i64,
    limit: std::time::Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let n = count(db, sql).await?;
        if n >= at_least {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{what}: {n} of {at_least} after {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The median of `rates` (the lower middle of an even count).
pub fn median(rates: impl Iterator<Item = f64>) -> f64 {
    let mut rates: Vec<f64> = rates.collect();
    rates.sort_by(f64::total_cmp);
    rates
        .get(rates.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

#[derive(QueryableByName)]
struct Waiting {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Lets the previous phase's work end before the next is measured: waits until the relay has
/// published (and deleted) every event the phase wrote to `outbox` (`schema.outbox`), then
/// writes every dirty buffer out (`CHECKPOINT`).
pub async fn settle(db: &mut AsyncPgConnection, outbox: &str) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let waiting: Waiting = diesel::sql_query(format!("SELECT count(*) AS n FROM {outbox}"))
            .get_result(db)
            .await?;
        if waiting.n == 0 {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{outbox} still holds {} events after two minutes",
            waiting.n
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    diesel::sql_query("CHECKPOINT").execute(db).await?;
    Ok(())
}
