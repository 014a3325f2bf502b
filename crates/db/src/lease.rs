//! Leases: one holder at a time per name, across every replica.
//!
//! A lease is a row (`leases`, a platform table) naming its holder and when it expires. Taking
//! it succeeds when nobody holds it, the holder's lease expired, or the caller already holds
//! it; each new holder increments `fencing`. The holder renews before expiry while it works
//! and releases it when done. A crashed holder needs no cleanup: its lease expires after the
//! TTL and the next caller takes it.
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
use diesel_async::RunQueryDsl;

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
