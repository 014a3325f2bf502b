//! How fast the sandboxes serve one 200-row page out of a 100,000-row collection, over real HTTP.
//!
//! Seeds 100,000 Fyle categories and 100,000 QBO customers, then fetches pages at random offsets
//! (fixed RNG seed): Fyle `GET /admin/categories?order=updated_at.desc&offset=…&limit=200` and QBO
//! `select * from Customer STARTPOSITION … MAXRESULTS 200` (and 1000, the qbo-sdk page size; the
//! start positions lie within the 90,000 active customers, every 10th generated one is inactive).
//! The Fyle rate limit and the QBO throttle are off: this measures the sandbox, not the limits.
//! Baseline, measured in the same run: a bare actix server returning the *same bytes* as a Fyle
//! page, pre-rendered — so `ratio = fyle_p50 / baseline_p50` is what the simulator's filtering,
//! paging and serialisation add on top of HTTP and transfer. Ends with one JSON line.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use attrsync_sandbox::{
    DEMO_ORG_ID, DEMO_REALM_ID, Sandbox, SandboxConfig, qbo::throttle::ThrottleConfig,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const ROWS: usize = 100_000;
const SAMPLES: usize = 400;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn measure<F, Fut>(mut f: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    for i in 0..20 {
        f(i).await;
    }
    let mut ms = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        let bytes = f(i).await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(bytes > 0, "empty response");
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&ms, 0.50), percentile(&ms, 0.99))
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    // The QBO throttle (500/min per realm) is lifted: this measures serving, not the rate limit.
    let qbo_throttle = ThrottleConfig {
        per_window: u32::MAX,
        ..ThrottleConfig::qbo()
    };
    // The Fyle rate limit (10 requests/s, on by default) is off for the same reason.
    let sb = Sandbox::start(SandboxConfig {
        qbo_throttle,
        fyle_rate_limit_per_second: None,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    sb.fyle().generate(DEMO_ORG_ID, "categories", ROWS).unwrap();
    let fyle_seed = t.elapsed();
    let t = Instant::now();
    sb.qbo().generate(DEMO_REALM_ID, "Customer", ROWS).unwrap();
    let qbo_seed = t.elapsed();
    println!("seeded {ROWS} categories in {fyle_seed:?}, {ROWS} customers in {qbo_seed:?}");

    let http = reqwest::Client::new();
    let fyle_token = sb.fyle().access_token(DEMO_ORG_ID);
    let qbo_token = sb.qbo().access_token(DEMO_REALM_ID);
    let fyle_url = format!("{}/platform/v1/admin/categories", sb.fyle_url());
    let qbo_url = format!("{}/v3/company/{DEMO_REALM_ID}/query", sb.qbo_url());

    let mut rng = StdRng::seed_from_u64(42);
    let offsets: Vec<usize> = (0..SAMPLES + 20)
        .map(|_| rng.random_range(0..ROWS - 200))
        .collect();
    // Every 10th generated customer is inactive and not listed: QBO pages start within the
    // 90,000 active ones, so every page is full.
    let qbo_offsets: Vec<usize> = offsets
        .iter()
        .map(|o| (o * 9 / 10).min(ROWS * 9 / 10 - 1000))
        .collect();

    let fyle_page = |i: usize| {
        let (http, url, token, offset) = (
            http.clone(),
            fyle_url.clone(),
            fyle_token.clone(),
            offsets[i].to_string(),
        );
        async move {
            let r = http
                .get(url)
                .bearer_auth(token)
                .query(&[
                    ("order", "updated_at.desc"),
                    ("offset", offset.as_str()),
                    ("limit", "200"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        }
    };
    let qbo_page = |size: usize| {
        let (http, url, token, offsets) = (
            http.clone(),
            qbo_url.clone(),
            qbo_token.clone(),
            qbo_offsets.clone(),
        );
        move |i: usize| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            let q = format!(
                "select * from Customer STARTPOSITION {} MAXRESULTS {size}",
                offsets[i] + 1
            );
            async move {
                let r = http
                    .get(url)
                    .bearer_auth(token)
                    .header("Accept", "application/json")
                    .query(&[("query", q.as_str()), ("minorversion", "75")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap().len()
            }
        }
    };

    // Baseline: the same bytes as one Fyle page, pre-rendered, from a bare actix server.
    let sample = http
        .get(&fyle_url)
        .bearer_auth(&fyle_token)
        .query(&[
            ("order", "updated_at.desc"),
            ("offset", "50000"),
            ("limit", "200"),
        ])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let page_bytes = sample.len();
    let baseline = HttpServer::new(move || {
        let body = sample.clone();
        App::new().default_service(web::to(move || {
            let body = body.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(body)
            }
        }))
    })
    .workers(2)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let baseline_url = format!("http://{}/page", baseline.addrs()[0]);
    let baseline = baseline.run();
    let baseline_handle = baseline.handle();
    tokio::spawn(baseline);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (base_p50, base_p99) = measure(|_| {
        let (http, url) = (http.clone(), baseline_url.clone());
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .len()
        }
    })
    .await;
    let (fyle_p50, fyle_p99) = measure(fyle_page).await;
    let (qbo_p50, qbo_p99) = measure(qbo_page(200)).await;
    let (qbo1000_p50, qbo1000_p99) = measure(qbo_page(1000)).await;

    println!("page of 200 rows = {page_bytes} bytes; {SAMPLES} samples each at random offsets");
    println!("baseline (pre-rendered bytes): p50 {base_p50:.3} ms  p99 {base_p99:.3} ms");
    println!("fyle categories 200/page:      p50 {fyle_p50:.3} ms  p99 {fyle_p99:.3} ms");
    println!("qbo customers 200/page:        p50 {qbo_p50:.3} ms  p99 {qbo_p99:.3} ms");
    println!("qbo customers 1000/page:       p50 {qbo1000_p50:.3} ms  p99 {qbo1000_p99:.3} ms");

    baseline_handle.stop(false).await;
    sb.stop().await;
    println!(
        "{}",
        serde_json::json!({
            "bench": "sandbox_page_serving",
            "rows": ROWS,
            "samples": SAMPLES,
            "fyle_p50_ms": round(fyle_p50),
            "fyle_p99_ms": round(fyle_p99),
            "qbo_p50_ms": round(qbo_p50),
            "qbo_p99_ms": round(qbo_p99),
            "qbo_1000_p50_ms": round(qbo1000_p50),
            "qbo_1000_p99_ms": round(qbo1000_p99),
            "baseline": "same Fyle page bytes served pre-rendered by a bare actix server",
            "baseline_p50_ms": round(base_p50),
            "baseline_p99_ms": round(base_p99),
            "ratio": round(fyle_p50 / base_p50),
            "seed_fyle_ms": fyle_seed.as_millis(),
            "seed_qbo_ms": qbo_seed.as_millis(),
        })
    );
}
