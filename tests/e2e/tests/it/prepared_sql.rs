//! `attrsync_db::prepared`: hand-written SQL that PostgreSQL parses and plans once per
//! connection, where diesel's `sql_query` is prepared anew on every call.

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn prepared_statements_like(conn: &mut AsyncPgConnection, marker: &str) -> i64 {
    attrsync_db::prepared::sql(
        "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE $1",
    )
    .bind::<Text, _>(format!("%{marker}%"))
    .get_result::<Number>(conn)
    .await
    .unwrap()
    .n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_is_kept_on_its_connection_and_a_sql_query_is_not() {
    let database = attrsync_e2e::test_database().await;
    let mut conn = AsyncPgConnection::establish(&database.url).await.unwrap();
    for i in 0..3_i64 {
        let kept: Number =
            attrsync_db::prepared::sql("SELECT $1::int8 + $2::int8 AS n -- kept-probe")
                .bind::<BigInt, _>(i)
                .bind::<BigInt, _>(10)
                .get_result(&mut conn)
                .await
                .unwrap();
        assert_eq!(kept.n, i + 10);
        let parsed_anew: Number = diesel::sql_query("SELECT $1::int8 + 10 AS n -- anew-probe")
            .bind::<BigInt, _>(i)
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(parsed_anew.n, i + 10);
    }
    assert_eq!(prepared_statements_like(&mut conn, "kept-probe").await, 1);
    assert_eq!(prepared_statements_like(&mut conn, "anew-probe").await, 0);
}
