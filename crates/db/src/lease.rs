//! Leases: one holder at a time per name, across every replica.
//!
//! A lease is a row (`leases`, a platform table) naming its holder and when it expires. Taking
//! it succeeds when nobody holds it, the holder's lease expired, or the caller already holds
//! it; each new holder increments `fencing`. The holder renews before expiry while it works
//! and releases it when done. A crashed holder needs no cleanup: its lease expires after the
//! TTL and the next caller takes it.
//!
//! Work done under a lease: [`keep_renewed`] renews it every third of its TTL while the work
//! runs (and stops when the work's future is dropped), and every write transaction of the work
//! first checks [`is_live`], so a holder that lost its lease writes nothing more. The check
//! locks the row `FOR KEY SHARE` and `fencing` is part of a unique key (`leases_name_fencing`):
//! a takeover, which raises `fencing`, is a key update and waits for every transaction that
//! checked the lease, while the holder's renewal, which changes `expires_at` alone, does not —
//! a work's back-to-back checking transactions (a pull writes two pages at once) cannot starve
//! its own renewal, as they could under `FOR SHARE`.
//!
//! Failure policy: a lease that could not be renewed is lost — the holder must stop (another
//! replica may take over); `renew` says so. Every decision is one statement evaluated with the
//! database's clock, so replicas' clocks do not matter.

use std::time::Duration;

use diesel::{
    OptionalExtension as _,
    pg::data_types::PgInterval,
    sql_types::{BigInt, Interval, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{DbError, Pool};

/// A lease held by this caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Grows with every new holder of the name.
    pub fencing: i64,
}

#[derive(diesel::QueryableByName)]
struct Fencing {
    #[diesel(sql_type = BigInt)]
    fencing: i64,
}

fn interval(ttl: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX))
}

/// Takes the lease `name` for `holder` for `ttl`, unless someone else holds it.
pub async fn acquire(
    pool: &Pool,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, DbError> {
    let mut conn = pool.get().await?;
    let taken: Option<Fencing> = diesel::sql_query(
        "INSERT INTO leases AS l (name, holder, expires_at) VALUES ($1, $2, now() + $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at, \
             fencing = CASE WHEN l.holder = excluded.holder AND l.expires_at >= now() \
                            THEN l.fencing ELSE l.fencing + 1 END \
         WHERE l.expires_at < now() OR l.holder = excluded.holder \
         RETURNING fencing",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(holder)
    .bind::<Interval, _>(interval(ttl))
    .get_result(&mut conn)
    .await
    .optional()?;
    Ok(taken.map(|f| Lease {
        name: name.to_owned(),
        holder: holder.to_owned(),
        fencing: f.fencing,
    }))
}

/// Extends a held lease by `ttl` from now; false when it was lost (expired and taken).
pub async fn renew(pool: &Pool, lease: &Lease, ttl: Duration) -> Result<bool, DbError> {
    let mut conn = pool.get().await?;
    let renewed = diesel::sql_query(
        "UPDATE leases SET expires_at = now() + $4 \
         WHERE name = $1 AND holder = $2 AND fencing = $3",
    )
    .bind::<Text, _>(&lease.name)
    .bind::<Text, _>(&lease.holder)
    .bind::<BigInt, _>(lease.fencing)
    .bind::<Interval, _>(interval(ttl))
    .execute(&mut conn)
    .await?;
    Ok(renewed == 1)
}

/// Gives the lease back (a no-op if it was already lost).
pub async fn release(pool: &Pool, lease: &Lease) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("DELETE FROM leases WHERE name = $1 AND holder = $2 AND fencing = $3")
        .bind::<Text, _>(&lease.name)
        .bind::<Text, _>(&lease.holder)
        .bind::<BigInt, _>(lease.fencing)
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Renews `held` every third of `ttl` until the returned handle is aborted or dropped (when the
/// work ends, or its future is dropped) or the lease is lost. A renewal that fails is retried
/// at the next tick; the lease then lapses only if the database stays unreachable for most of
/// the TTL.
pub fn keep_renewed(
    pool: Pool,
    held: Lease,
    ttl: Duration,
) -> tokio_util::task::AbortOnDropHandle<()> {
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match renew(&pool, &held, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(lease = %held.name, "lease lost");
                    return;
                }
                Err(e) => tracing::warn!(lease = %held.name, error = %e, "lease not renewed"),
            }
        }
    }))
}

#[derive(diesel::QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    held: i64,
}

/// Whether `held` is still this holder's live lease, inside the caller's transaction; `FOR KEY
/// SHARE`, so a new holder waits for the transaction that checked it and a renewal does not
/// (see the module doc).
pub async fn is_live(conn: &mut AsyncPgConnection, held: &Lease) -> diesel::QueryResult<bool> {
    let live: Held = diesel::sql_query(
        "SELECT count(*) AS held FROM (SELECT 1 FROM leases \
         WHERE name = $1 AND holder = $2 AND fencing = $3 AND expires_at > now() FOR KEY SHARE) l",
    )
    .bind::<Text, _>(&held.name)
    .bind::<Text, _>(&held.holder)
    .bind::<BigInt, _>(held.fencing)
    .get_result(conn)
    .await?;
    Ok(live.held == 1)
}
