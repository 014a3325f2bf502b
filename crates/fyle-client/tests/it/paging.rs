//! Listing: 10,000 rows with and without the 10 requests/second limit, rows changing while the
//! pass pages (renames, creates, timestamp ties), incremental passes from the watermark.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use attrsync_fyle_client::{ClientOptions, Filters, FyleClient, Listing};
use attrsync_sandbox::{FaultAction, FaultRule, SandboxHandle, Seed, Side};
use serde_json::{Value, json};

use crate::common::{
    CATEGORIES, ORG, calls, calls_with_status, connect, connect_with, fast_options, messy_sandbox,
    sandbox,
};

fn ids(listing: &Listing) -> BTreeSet<String> {
    listing.rows.iter().map(|r| r["id"].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_categories_page_within_the_sandbox_rate_limit() {
    let sb = sandbox(Seed::Empty, Some(10)).await;
    sb.fyle()
        .generate(ORG, "categories", 10_000)
        .expect("generate");
    // The default options: the in-process limiter at Fyle's 10 requests/second.
    let fyle = connect_with(&sb, ORG, ClientOptions::default()).await;
    let started = Instant::now();
    let listing = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("a full pass under the limit");
    let took = started.elapsed();
    assert_eq!(listing.rows.len(), 10_000);
    assert_eq!(ids(&listing).len(), 10_000);
    let pages = u64::from(listing.pages);
    assert!(pages <= 1 + 10_000u64.div_ceil(199), "{pages} pages");
    let throttled = calls_with_status(&sb, CATEGORIES, 429);
    // Paced at 10/s: the pass cannot be faster than the limit allows…
    assert!(
        took >= Duration::from_millis(100 * (pages - 1)),
        "{pages} pages in {took:?}"
    );
    // …and pacing, not 429s, is what keeps it there (a few 429s are a busy machine's jitter;
    // an unpaced client is refused most of its requests).
    assert!(
        throttled <= pages / 10,
        "{throttled} answers 429 for {pages} pages"
    );
    eprintln!(
        "rate limit on: {} rows, {pages} pages, {throttled} × 429, {took:?} (limit floor {:?})",
        listing.rows.len(),
        Duration::from_millis(100 * (pages - 1))
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_categories_page_quickly_with_the_rate_limit_off() {
    let sb = sandbox(Seed::Empty, None).await;
    sb.fyle()
        .generate(ORG, "categories", 10_000)
        .expect("generate");
    let fyle = connect(&sb).await;
    let started = Instant::now();
    let listing = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("a full pass");
    let took = started.elapsed();
    assert_eq!(ids(&listing).len(), 10_000);
    assert_eq!(calls(&sb, CATEGORIES), u64::from(listing.pages));
    // Every page asked for the maximum explicitly, in (updated_at, id) order.
    let log = sb.stats().log;
    let pages: Vec<_> = log.iter().filter(|e| e.endpoint == CATEGORIES).collect();
    assert!(pages.iter().all(|e| e.query.contains("limit=200")));
    assert!(
        pages[1..]
            .iter()
            .all(|e| e.query.contains("order=updated_at.asc%2Cid.asc")
                || e.query.contains("order=id.asc")),
        "{:?}",
        pages.iter().map(|e| &e.query).collect::<Vec<_>>()
    );
    eprintln!(
        "rate limit off: {} rows, {} pages, {took:?}",
        listing.rows.len(),
        listing.pages
    );
    sb.stop().await;
}

/// The sandbox's final state of a collection, read through the control API (not the client).
fn truth(sb: &SandboxHandle, ids: &BTreeSet<i64>) -> BTreeMap<i64, Value> {
    ids.iter()
        .filter_map(|id| {
            sb.fyle()
                .get(ORG, "categories", &id.to_string())
                .map(|v| (*id, v))
        })
        .collect()
}

fn by_id(rows: &[Value]) -> BTreeMap<i64, Value> {
    rows.iter()
        .map(|r| (r["id"].as_i64().expect("id"), r.clone()))
        .collect()
}

/// Creates `n` categories in bulk posts of 200 (each bulk shares one stamp).
async fn bulk_categories(fyle: &FyleClient, prefix: &str, n: usize) {
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("{prefix} {i:05}")}))
        .collect();
    for chunk in rows.chunks(200) {
        fyle.post_bulk("categories", chunk).await.expect("bulk");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_renamed_and_created_between_pages_inside_one_timestamp_tie_are_not_missed() {
    let sb = messy_sandbox().await;
    let fyle = connect_with(
        &sb,
        ORG,
        ClientOptions {
            page_size: 50,
            ..fast_options()
        },
    )
    .await;
    // 1,000 rows on one stamp (the paused clock), then 200 more a second later.
    sb.clock().pause();
    bulk_categories(&fyle, "Tied", 1000).await;
    sb.clock().advance(Duration::from_secs(1));
    bulk_categories(&fyle, "Later", 200).await;
    let before = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("baseline");
    let start_ids: BTreeSet<i64> = by_id(&before.rows).keys().copied().collect();
    assert_eq!(start_ids.len(), 1200);
    let ordered: Vec<i64> = start_ids.iter().copied().collect();

    // Every page is slowed a little; a writer waits for each page to be served and then writes:
    // renames of rows already read and not yet read, new rows, all on the paused clock's stamp
    // (ties at the cursor), and now and then a second passes.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Latency { ms: 15 },
        skip: 0,
        times: None,
    });
    let done = AtomicBool::new(false);
    let pass = async {
        let r = fyle.list_all("categories", &Filters::new()).await;
        done.store(true, Ordering::Relaxed);
        r
    };
    let writer = async {
        let control = sb.fyle();
        let mut served = calls(&sb, CATEGORIES);
        let mut step = 0usize;
        let mut created = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let now = calls(&sb, CATEGORIES);
            if now == served {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            served = now;
            step += 1;
            let early = ordered[(step * 7) % 300];
            let late = ordered[ordered.len() - 1 - (step * 13) % 600];
            control
                .rename(
                    ORG,
                    "categories",
                    &early.to_string(),
                    &format!("Early {step}"),
                )
                .expect("rename a row already read");
            control
                .rename(
                    ORG,
                    "categories",
                    &late.to_string(),
                    &format!("Late {step}"),
                )
                .expect("rename a row not read yet");
            let c = control
                .create(
                    ORG,
                    "categories",
                    json!({"name": format!("Created {step}")}),
                )
                .expect("create");
            created.push(c["id"].as_i64().expect("id"));
            if step.is_multiple_of(9) {
                sb.clock().advance(Duration::from_secs(1));
            }
        }
        created
    };
    let (listing, created) = tokio::join!(pass, writer);
    let listing = listing.expect("the pass under writes");
    sb.faults().clear();
    assert!(
        created.len() >= 20,
        "writes happened between {} pages",
        listing.pages
    );

    // 1. Every row that existed throughout was returned by the pass itself.
    let got = by_id(&listing.rows);
    let missed: Vec<&i64> = start_ids
        .iter()
        .filter(|id| !got.contains_key(id))
        .collect();
    assert!(missed.is_empty(), "missed {missed:?}");

    // 2. The next incremental pass from the watermark (no overlap needed) brings every final
    //    version the pass could not see, including rows created meanwhile.
    let next = fyle
        .list_changed_since(
            "categories",
            &Filters::new(),
            listing.watermark,
            Duration::ZERO,
        )
        .await
        .expect("incremental pass");
    let mut merged = got;
    merged.extend(by_id(&next.rows));
    let all_ids: BTreeSet<i64> = start_ids.iter().chain(&created).copied().collect();
    let truth = truth(&sb, &all_ids);
    assert_eq!(truth.len(), 1200 + created.len());
    let stale: Vec<(&i64, &Value)> = truth
        .iter()
        .filter(|(id, v)| merged.get(id) != Some(*v))
        .collect();
    assert!(
        stale.is_empty(),
        "stale or missing after catch-up: {stale:?}"
    );
    eprintln!(
        "under writes: {} rows in {} pages while {} rows were created and {} renamed; catch-up {} rows in {} pages",
        listing.rows.len(),
        listing.pages,
        created.len(),
        created.len() * 2,
        next.rows.len(),
        next.pages
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_pass_returns_what_changed_since_the_watermark() {
    let sb = sandbox(Seed::Empty, None).await;
    sb.fyle()
        .generate(ORG, "categories", 500)
        .expect("generate");
    let fyle = connect(&sb).await;
    let full = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("full pass");
    let w = full.watermark.expect("rows exist");
    let ids: Vec<i64> = by_id(&full.rows).keys().copied().collect();
    sb.clock().advance(Duration::from_secs(5));
    sb.fyle()
        .rename(ORG, "categories", &ids[3].to_string(), "Renamed A")
        .expect("rename");
    sb.fyle()
        .set_enabled(ORG, "categories", &ids[400].to_string(), false)
        .expect("disable");
    let new = sb
        .fyle()
        .create(ORG, "categories", json!({"name": "Brand new"}))
        .expect("create");
    let changed = fyle
        .list_changed_since("categories", &Filters::new(), Some(w), Duration::ZERO)
        .await
        .expect("incremental");
    let got = by_id(&changed.rows);
    assert_eq!(got[&ids[3]]["name"], "Renamed A");
    assert_eq!(got[&ids[400]]["is_enabled"], false);
    assert!(got.contains_key(&new["id"].as_i64().expect("id")));
    assert!(
        got.len() <= 4,
        "the three changes and the row at the inclusive watermark: {:?}",
        got.keys()
    );
    assert_eq!(changed.pages, 1, "a small change set is one request");
    let w2 = changed.watermark.expect("watermark");
    assert!(w2 > w);
    let quiet = fyle
        .list_changed_since("categories", &Filters::new(), Some(w2), Duration::ZERO)
        .await
        .expect("nothing changed");
    assert!(quiet.rows.len() <= 1, "only the tie at the watermark");
    assert_eq!(quiet.watermark, Some(w2), "the watermark never goes back");
    // The overlap widens the window.
    let wide = fyle
        .list_changed_since(
            "categories",
            &Filters::new(),
            Some(w2),
            Duration::from_secs(3600 * 24 * 365 * 30),
        )
        .await
        .expect("overlap");
    assert_eq!(wide.rows.len(), 501);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_are_passed_through_and_reserved_parameters_refused() {
    let sb = sandbox(Seed::Empty, None).await;
    sb.fyle()
        .generate(ORG, "categories", 300)
        .expect("generate");
    let fyle = connect(&sb).await;
    let all = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("all");
    for r in all.rows.iter().step_by(7) {
        sb.fyle()
            .set_enabled(ORG, "categories", &r["id"].to_string(), false)
            .expect("disable");
    }
    let all = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("all");
    let enabled = fyle
        .list_all("categories", &Filters::new().eq("is_enabled", true))
        .await
        .expect("enabled");
    let expected = all.rows.iter().filter(|r| r["is_enabled"] == true).count();
    assert_eq!(enabled.rows.len(), expected);
    assert_eq!(expected, 300 - 300usize.div_ceil(7));
    let err = fyle
        .list_all("categories", &Filters::new().eq("order", "id"))
        .await
        .expect_err("the pager owns order");
    assert!(matches!(
        err,
        attrsync_fyle_client::Error::InvalidRequest(_)
    ));
    sb.stop().await;
}
