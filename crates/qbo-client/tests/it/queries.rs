//! The query builder and pager against the sandbox's query language: quoting, paging past 1000
//! rows, active/inactive/both, counts, reads by id, long statements, query faults.

use std::collections::HashSet;

use attrsync_qbo_client::{Active, ClientOptions, Disposition, Error, Query};
use attrsync_sandbox::SandboxHandle;
use serde_json::{Value, json};

use crate::common::{QUERY, calls, client, client_with, fast_options, sandbox, store};

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["Id"].as_str().expect("every row has an Id").to_owned())
        .collect()
}

fn unique(rows: &[Value]) -> HashSet<String> {
    let ids = ids(rows);
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "no row twice");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_quotes_and_backslashes_round_trip_through_a_query() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    // Each pair differs only where a wrong escape would make them collide or break the query.
    let names = [
        r"O'Brien \ Sons",
        "O'Brien  Sons",
        r"Ends with \",
        r"Back\'slash",
        "Back'slash",
        "It's 100% \"fine\"",
    ];
    let mut created = Vec::new();
    for name in names {
        let v = qbo
            .create("Vendor", json!({ "DisplayName": name }), None)
            .await
            .unwrap_or_else(|e| panic!("create {name:?}: {e}"));
        assert_eq!(v["DisplayName"], name);
        created.push(v["Id"].as_str().expect("id").to_owned());
    }
    for (name, id) in names.iter().zip(&created) {
        let rows = qbo
            .query_all(&Query::select("Vendor").where_eq("DisplayName", *name))
            .await
            .unwrap_or_else(|e| panic!("query {name:?}: {e}"));
        assert_eq!(ids(&rows), vec![id.clone()], "{name:?} finds itself only");
    }
    let liked = qbo
        .query_all(&Query::select("Vendor").where_like("DisplayName", "O'Brien%"))
        .await
        .expect("like");
    assert_eq!(liked.len(), 2);
    sb.stop().await;
}

async fn with_accounts(n: usize) -> SandboxHandle {
    let sb = sandbox().await;
    sb.qbo()
        .generate(crate::common::REALM, "Account", n)
        .expect("generate");
    sb
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_over_more_than_a_thousand_rows_returns_each_exactly_once() {
    let sb = with_accounts(2500).await;
    let qbo = client(&sb);
    let all = Query::select("Account").active(Active::Both);
    let rows = qbo.query_all(&all).await.expect("query_all");
    let total = qbo
        .count(&Query::count("Account").active(Active::Both))
        .await
        .expect("count");
    assert!(rows.len() > 2500, "{}", rows.len());
    assert_eq!(rows.len() as u64, total);
    let set = unique(&rows);
    let pages = rows.len() / 1000 + 1;
    assert_eq!(
        calls(&sb, QUERY),
        pages as u64 + 1,
        "{pages} pages of 1000 (the last short) and the count"
    );

    // Another page size pages differently and finds the same rows.
    let small = client_with(
        &sb,
        store(&sb),
        ClientOptions {
            page_size: 700,
            ..fast_options()
        },
    );
    let again = small.query_all(&all).await.expect("query_all by 700");
    assert_eq!(unique(&again), set);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_inactive_and_both_partition_the_rows() {
    let sb = with_accounts(300).await;
    let qbo = client(&sb);
    let q = |a: Option<Active>| {
        let q = Query::select("Account");
        match a {
            Some(a) => q.active(a),
            None => q,
        }
    };
    let default = qbo.query_all(&q(None)).await.expect("default");
    let only = qbo.query_all(&q(Some(Active::Only))).await.expect("only");
    let inactive = qbo
        .query_all(&q(Some(Active::Inactive)))
        .await
        .expect("inactive");
    let both = qbo.query_all(&q(Some(Active::Both))).await.expect("both");

    assert_eq!(
        unique(&default),
        unique(&only),
        "name lists default to active"
    );
    assert!(only.iter().all(|r| r["Active"] == true));
    assert!(!inactive.is_empty());
    assert!(inactive.iter().all(|r| r["Active"] == false));
    assert!(
        inactive.iter().all(|r| r["Name"]
            .as_str()
            .is_some_and(|n| n.ends_with(" (deleted)"))),
        "QBO marks deactivated names"
    );
    let (a, i, b) = (unique(&only), unique(&inactive), unique(&both));
    assert!(a.is_disjoint(&i));
    assert_eq!(a.union(&i).cloned().collect::<HashSet<_>>(), b);
    for (active, n) in [
        (Active::Only, a.len()),
        (Active::Inactive, i.len()),
        (Active::Both, b.len()),
    ] {
        let counted = qbo
            .count(&Query::count("Account").active(active))
            .await
            .expect("count");
        assert_eq!(counted, n as u64, "{active:?}");
    }
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_id_empty_results_and_query_faults() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let rate = qbo.read("TaxRate", "6").await.expect("taxrate 6");
    assert_eq!(rate["Name"], "ON TAX PURCHASE");
    assert_eq!(rate["RateValue"], 13);
    assert_eq!(calls(&sb, "GET /v3/company/{realm}/taxrate/{id}"), 1);

    let err = qbo
        .read("Account", "987654")
        .await
        .expect_err("no such account");
    assert!(
        matches!(&err, Error::NotFound(f) if f.code() == Some(610)),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Rejected);

    let none = qbo
        .query_all(&Query::select("Account").where_eq("Name", "No such account"))
        .await
        .expect("an empty answer is no error");
    assert!(none.is_empty());

    let err = qbo
        .query_all(&Query::select("Acount"))
        .await
        .expect_err("unknown entity");
    assert!(
        matches!(&err, Error::Validation { status: 400, fault } if fault.code() == Some(4001)),
        "{err:?}"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_in_list_is_sent_as_a_post_body() {
    let sb = with_accounts(400).await;
    let qbo = client(&sb);
    let all = qbo
        .query_all(&Query::select("Account").active(Active::Both))
        .await
        .expect("all");
    let wanted: Vec<String> = ids(&all).into_iter().take(300).collect();
    let rows = qbo
        .query_all(
            &Query::select("Account")
                .where_in("Id", wanted.iter())
                .active(Active::Both),
        )
        .await
        .expect("by ids");
    assert_eq!(
        unique(&rows),
        wanted.iter().cloned().collect::<HashSet<_>>()
    );
    assert_eq!(calls(&sb, "POST /v3/company/{realm}/query"), 1);
    sb.stop().await;
}
