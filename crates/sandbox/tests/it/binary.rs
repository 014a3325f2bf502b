//! The `sandbox` binary as `make run` uses it: prints its URLs and credentials as one JSON line,
//! serves the demo org and realm, and stops on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_credentials_and_serves_the_demo_seed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args([
            "--seed",
            "demo",
            "--fyle-port",
            "0",
            "--fyle-accounts-port",
            "0",
            "--qbo-port",
            "0",
            "--workers",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader task")
    .expect("one line");
    let info: Value = serde_json::from_str(&line).expect("the first line is JSON");
    let fyle_url = info["fyle_url"].as_str().expect("fyle_url");
    let accounts_url = info["fyle_accounts_url"]
        .as_str()
        .expect("fyle_accounts_url");
    let client = &info["fyle"][0];
    assert_eq!(client["org_id"], "orNoatdUnm1w");
    assert_eq!(info["qbo_realms"][0]["realm_id"], "9130357766900456");

    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{accounts_url}/oauth/token"))
        .json(
            &json!({"grant_type": "refresh_token", "refresh_token": client["refresh_token"],
            "client_id": client["client_id"], "client_secret": client["client_secret"]}),
        )
        .send()
        .await
        .expect("token call")
        .json()
        .await
        .expect("JSON");
    let cats: Value = http
        .get(format!("{fyle_url}/platform/v1/admin/categories"))
        .bearer_auth(token["access_token"].as_str().expect("access token"))
        .query(&[("order", "updated_at.desc")])
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON");
    assert_eq!(cats["count"], 3, "demo categories are served");

    // SIGTERM: the process exits cleanly.
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("wait task")
        .expect("exit status");
    assert!(status.success(), "exits 0 on SIGTERM, got {status:?}");
}
