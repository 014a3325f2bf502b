//! Fyle `updated_at` ties and the paging race: the sandbox must be able to produce the race a
//! real client meets — rows written while it pages — and show which client survives it.
//!
//! The scripted scenario pauses the sandbox clock, so every write lands on one timestamp (a bulk
//! post shares one stamp anyway; with whole-second stamps unrelated writes in the same second tie
//! the same way). Between pages, one row already read is renamed, a new row is created and one row
//! not yet read is renamed.

use std::collections::BTreeMap;

use attrsync_sandbox::{SandboxConfig, SandboxHandle, Seed};
use serde_json::{Value, json};

use crate::common::{Fyle, ORG, config, start_with};

const PATH: &str = "/admin/categories";

async fn empty_org() -> SandboxHandle {
    start_with(SandboxConfig {
        seed: Seed::Empty,
        fyle_rate_limit_per_second: None, // the paused clock would stop the limiter's window
        ..config()
    })
    .await
}

async fn page(fyle: &Fyle, query: &[(&str, &str)]) -> Vec<Value> {
    let (status, body) = fyle.get(PATH, query).await;
    assert_eq!(status, 200, "{body}");
    body["data"].as_array().expect("data").clone()
}

/// Six categories in one bulk post (ids ascending in write order); returns their ids.
async fn six_categories(fyle: &Fyle) -> Vec<i64> {
    let rows: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("Cat {i}")}))
        .collect();
    let (status, body) = fyle
        .post(&format!("{PATH}/bulk"), &json!({ "data": rows }))
        .await;
    assert_eq!(status, 200, "{body}");
    let all = page(fyle, &[("order", "id")]).await;
    all.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

/// The writes made between pages: after the first page a row already read (the first one read)
/// is renamed and a row is created; after the second page a row not yet read is renamed.
async fn mutate(sb: &SandboxHandle, step: usize, first_read: i64, not_yet_read: i64) {
    let ctl = sb.fyle();
    match step {
        1 => {
            ctl.rename(ORG, "categories", &first_read.to_string(), "Renamed early")
                .expect("rename");
            ctl.create(ORG, "categories", json!({"name": "Created meanwhile"}))
                .expect("create");
        }
        2 => {
            ctl.rename(ORG, "categories", &not_yet_read.to_string(), "Renamed late")
                .expect("rename");
        }
        _ => {}
    }
}

/// Latest version seen per id: `(name, updated_at)`.
type Seen = BTreeMap<i64, (String, String)>;

fn remember(seen: &mut Seen, rows: &[Value]) {
    for r in rows {
        seen.insert(
            r["id"].as_i64().expect("id"),
            (
                r["name"].as_str().expect("name").to_owned(),
                r["updated_at"].as_str().expect("updated_at").to_owned(),
            ),
        );
    }
}

async fn final_state(fyle: &Fyle) -> Seen {
    let mut seen = Seen::new();
    remember(
        &mut seen,
        &page(fyle, &[("order", "id"), ("limit", "200")]).await,
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_post_shares_one_updated_at_and_ties_have_no_hidden_id_order() {
    let sb = empty_org().await;
    let fyle = Fyle::connect(&sb).await;
    let ids = six_categories(&fyle).await;
    let rows = page(&fyle, &[("order", "updated_at.desc")]).await;
    let stamps: Vec<&str> = rows
        .iter()
        .map(|r| r["updated_at"].as_str().expect("ts"))
        .collect();
    assert!(
        stamps.iter().all(|s| *s == stamps[0]),
        "one stamp: {stamps:?}"
    );
    assert!(
        stamps[0].ends_with(".000000+00:00"),
        "the contract suite rounds stamps to whole seconds: {}",
        stamps[0]
    );
    let order: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    let mut by_id_desc = ids.clone();
    by_id_desc.reverse();
    assert_eq!(order, by_id_desc, "ties come in (reversed) write order");

    // Rewriting a row inside the tie moves it; only an explicit `id` key gives a stable order.
    sb.clock().pause();
    let ts = chrono::DateTime::parse_from_rfc3339(stamps[0]).expect("stamp");
    sb.clock().set_now(ts.with_timezone(&chrono::Utc));
    sb.fyle()
        .rename(ORG, "categories", &ids[3].to_string(), "Moved")
        .expect("rename");
    let rows = page(&fyle, &[("order", "updated_at.desc")]).await;
    assert_eq!(rows[0]["id"], ids[3], "the rewritten row leads its tie");
    assert_eq!(rows[0]["updated_at"], stamps[0], "… without a new stamp");
    let rows = page(&fyle, &[("order", "updated_at.desc,id")]).await;
    let order: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().expect("id")).collect();
    assert_eq!(order, ids, "updated_at.desc,id is a total order");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_pager_on_updated_at_desc_misses_and_repeats_rows_written_while_it_pages() {
    let sb = empty_org().await;
    let fyle = Fyle::connect(&sb).await;
    sb.clock().pause();
    let ids = six_categories(&fyle).await;
    // The integration's loop: `order=updated_at.desc`, offset = rows so far, until count.
    let mut seen = Seen::new();
    let mut read = Vec::new();
    let mut step = 0;
    loop {
        let offset = read.len().to_string();
        let (_, body) = fyle
            .get(
                PATH,
                &[
                    ("order", "updated_at.desc"),
                    ("offset", &offset),
                    ("limit", "2"),
                ],
            )
            .await;
        let rows = body["data"].as_array().expect("data").clone();
        read.extend(rows.iter().map(|r| r["id"].as_i64().expect("id")));
        remember(&mut seen, &rows);
        step += 1;
        // first read = the newest of the tie (ids[5]); not yet read = the oldest (ids[0])
        mutate(&sb, step, ids[5], ids[0]).await;
        if rows.is_empty() || read.len() as u64 >= body["count"].as_u64().expect("count") {
            break;
        }
    }
    let truth = final_state(&fyle).await;
    let repeated = read.len() - read.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(repeated > 0, "some row is read twice: {read:?}");
    let missed: Vec<&i64> = truth.keys().filter(|id| !seen.contains_key(id)).collect();
    let stale: Vec<&i64> = truth
        .iter()
        .filter(|(id, v)| seen.get(id).is_some_and(|s| s != *v))
        .map(|(id, _)| id)
        .collect();
    assert!(
        !missed.is_empty() && !stale.is_empty(),
        "the naive pager misses a row ({missed:?}) and ends with a stale version ({stale:?})"
    );
    sb.stop().await;
}

/// Keyset pages in `(updated_at, id)` order from an optional inclusive watermark: drain the
/// current timestamp's tie by `id`, then move to later timestamps.
async fn keyset_scan(
    sb: &SandboxHandle,
    fyle: &Fyle,
    from: Option<&str>,
    seen: &mut Seen,
    mutations: Option<(i64, i64)>,
) {
    let mut cursor: Option<(String, i64)> = None;
    let mut step = 0;
    loop {
        let rows = match &cursor {
            None => {
                let mut q = vec![("order", "updated_at,id"), ("limit", "2")];
                let gte = from.map(|ts| format!("gte.{ts}"));
                if let Some(g) = &gte {
                    q.push(("updated_at", g.as_str()));
                }
                page(fyle, &q).await
            }
            Some((ts, id)) => {
                let (eq, gt_id, gt) = (format!("eq.{ts}"), format!("gt.{id}"), format!("gt.{ts}"));
                let tie = page(
                    fyle,
                    &[
                        ("updated_at", &eq),
                        ("id", &gt_id),
                        ("order", "id"),
                        ("limit", "2"),
                    ],
                )
                .await;
                if tie.is_empty() {
                    page(
                        fyle,
                        &[
                            ("updated_at", &gt),
                            ("order", "updated_at,id"),
                            ("limit", "2"),
                        ],
                    )
                    .await
                } else {
                    tie
                }
            }
        };
        let Some(last) = rows.last() else { break };
        cursor = Some((
            last["updated_at"].as_str().expect("ts").to_owned(),
            last["id"].as_i64().expect("id"),
        ));
        remember(seen, &rows);
        step += 1;
        if let Some((first_read, not_yet_read)) = mutations {
            mutate(sb, step, first_read, not_yet_read).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pager_with_an_inclusive_high_water_mark_sees_every_final_version() {
    let sb = empty_org().await;
    let fyle = Fyle::connect(&sb).await;
    sb.clock().pause();
    let ids = six_categories(&fyle).await;
    // 1. high-water mark before the scan: the newest stamp
    let newest = page(
        &fyle,
        &[("order", "updated_at.desc,id.desc"), ("limit", "1")],
    )
    .await;
    let high_water = newest[0]["updated_at"].as_str().expect("ts").to_owned();
    // 2. the scan, with the same writes between pages as the naive pager met
    let mut seen = Seen::new();
    keyset_scan(&sb, &fyle, None, &mut seen, Some((ids[0], ids[5]))).await;
    let truth = final_state(&fyle).await;
    assert_eq!(
        seen.len(),
        truth.len(),
        "no row missed, the new one included"
    );
    assert_ne!(
        seen[&ids[0]], truth[&ids[0]],
        "a row rewritten behind the cursor inside its tie is not seen again by the scan"
    );
    // 3. catch-up from the inclusive high-water mark
    keyset_scan(&sb, &fyle, Some(&high_water), &mut seen, None).await;
    assert_eq!(seen, truth, "every row's final version");
    sb.stop().await;
}
