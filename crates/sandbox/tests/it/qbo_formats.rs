//! QBO honours `Accept`: XML unless the request names `application/json`; the 401 of a request
//! without a usable token and every 429 are XML whatever was asked; the lenient JSON-only option
//! answers JSON to everything.

use std::time::Duration;

use attrsync_sandbox::{
    FaultAction, FaultRule, QboCompany, SandboxConfig, SandboxHandle, Seed, Side,
};
use serde_json::Value;

use crate::common::{REALM, config, start, start_with};

struct Raw {
    status: u16,
    content_type: String,
    body: String,
}

impl Raw {
    fn is_xml(&self) -> bool {
        self.content_type.starts_with("application/xml")
            && self.body.starts_with(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3""#)
    }

    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

async fn get(
    sb: &SandboxHandle,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
    query: &[(&str, &str)],
) -> Raw {
    let mut req = reqwest::Client::new()
        .get(format!("{}/v3/company/{REALM}{path}", sb.qbo_url()))
        .query(query);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let r = req.send().await.expect("GET");
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Raw {
        status: r.status().as_u16(),
        content_type,
        body: r.text().await.expect("body"),
    }
}

const VENDORS: [(&str, &str); 1] = [("query", "select * from Vendor")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_xml_unless_json_is_accepted() {
    let sb = start().await;
    let token = sb.qbo().access_token(REALM);
    for accept in [None, Some("*/*"), Some("application/xml")] {
        let r = get(&sb, "/query", Some(&token), accept, &VENDORS).await;
        assert_eq!(r.status, 200);
        assert!(r.is_xml(), "Accept {accept:?}: {}", r.body);
        assert!(
            r.body.contains(r#"<QueryResponse startPosition="1" maxResults="1"><Vendor domain="QBO" sparse="false"><Id>30</Id><SyncToken>0</SyncToken>"#),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(r#"<CurrencyRef name="United States Dollar">USD</CurrencyRef>"#)
        );
    }
    let r = get(
        &sb,
        "/query",
        Some(&token),
        Some("application/json"),
        &VENDORS,
    )
    .await;
    assert_eq!(r.json()["QueryResponse"]["Vendor"][0]["Id"], "30");

    let r = get(&sb, "/taxrate/6", Some(&token), None, &[]).await;
    assert!(
        r.is_xml() && r.body.contains("<RateValue>13</RateValue>"),
        "{}",
        r.body
    );
    let r = get(
        &sb,
        "/query",
        Some(&token),
        None,
        &[("query", "select * from Nope")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.is_xml()
            && r.body
                .contains(r#"<Fault type="ValidationFault"><Error code="4001""#),
        "{}",
        r.body
    );
    let r = get(
        &sb,
        "/query",
        Some(&token),
        None,
        &[("query", "select count(*) from Vendor")],
    )
    .await;
    assert!(
        r.body.contains(r#"<QueryResponse totalCount="1">"#),
        "{}",
        r.body
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_401_is_xml_even_for_json_clients_and_expired_token_follows_accept() {
    let sb = start().await;
    let json = Some("application/json");
    for token in [None, Some("never-issued")] {
        let r = get(&sb, "/query", token, json, &VENDORS).await;
        assert_eq!(r.status, 401);
        assert!(
            r.is_xml()
                && r.body.contains(r#"<Fault type="AuthenticationFault"><Error code="100"><Message>General Authentication Error</Message>"#),
            "{token:?}: {}",
            r.body
        );
    }
    let token = sb.qbo().access_token(REALM);
    sb.clock().advance(Duration::from_secs(3600));
    let r = get(&sb, "/query", Some(&token), json, &VENDORS).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["fault"]["error"][0]["code"], "3200");
    let r = get(&sb, "/query", Some(&token), None, &VENDORS).await;
    assert!(
        r.is_xml() && r.body.contains(r#"<Error code="3200">"#),
        "{}",
        r.body
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_only_option_answers_json_to_everything() {
    let sb = start_with(SandboxConfig {
        seed: Seed::Demo,
        qbo_json_only: true,
        ..config()
    })
    .await;
    let token = sb.qbo().access_token(REALM);
    let r = get(&sb, "/query", Some(&token), None, &VENDORS).await;
    assert_eq!(r.json()["QueryResponse"]["Vendor"][0]["Id"], "30");
    let r = get(&sb, "/query", None, None, &VENDORS).await;
    assert_eq!(
        (r.status, r.json()["fault"]["error"][0]["code"].clone()),
        (401, "100".into())
    );
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: "GET /v3/company/{realm}/query".into(),
        action: FaultAction::Throttle { retry_after: None },
        skip: 0,
        times: Some(1),
    });
    let r = get(&sb, "/query", Some(&token), None, &VENDORS).await;
    assert_eq!(
        (r.status, r.json()["fault"]["error"][0]["code"].clone()),
        (429, "3001".into())
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_info_and_preferences_follow_the_configured_company() {
    let sb = start_with(SandboxConfig {
        seed: Seed::Demo,
        qbo_company: QboCompany {
            country: "GB".into(),
            home_currency: "GBP".into(),
            multi_currency: true,
            tax_enabled: false,
            ..QboCompany::default()
        },
        ..config()
    })
    .await;
    let token = sb.qbo().access_token(REALM);
    let json = Some("application/json");
    let info = get(
        &sb,
        &format!("/companyinfo/{REALM}"),
        Some(&token),
        json,
        &[],
    )
    .await
    .json();
    assert_eq!(info["CompanyInfo"]["Country"], "GB");
    let prefs = get(&sb, "/preferences", Some(&token), json, &[])
        .await
        .json();
    let p = &prefs["Preferences"];
    assert_eq!(p["CurrencyPrefs"]["MultiCurrencyEnabled"], true);
    assert_eq!(p["CurrencyPrefs"]["HomeCurrency"]["value"], "GBP");
    assert_eq!(p["TaxPrefs"]["UsingSalesTax"], false);
    assert_eq!(p["TaxPrefs"]["PartnerTaxEnabled"], false);
    let us = start().await;
    let token = us.qbo().access_token(REALM);
    let prefs = get(&us, "/preferences", Some(&token), json, &[])
        .await
        .json();
    assert_eq!(
        prefs["Preferences"]["CurrencyPrefs"]["MultiCurrencyEnabled"],
        false
    );
    assert_eq!(prefs["Preferences"]["TaxPrefs"]["UsingSalesTax"], true);
    // … and the admin API changes it at run time
    let r = reqwest::Client::new()
        .put(format!(
            "{}/_sandbox/qbo/realms/{REALM}/company",
            us.qbo_url()
        ))
        .json(&serde_json::json!({"country": "CA", "home_currency": "CAD", "tax_enabled": false}))
        .send()
        .await
        .expect("admin company");
    assert_eq!(r.status(), 200);
    let prefs = get(&us, "/preferences", Some(&token), json, &[])
        .await
        .json();
    assert_eq!(
        prefs["Preferences"]["CurrencyPrefs"]["HomeCurrency"]["value"],
        "CAD"
    );
    assert_eq!(prefs["Preferences"]["TaxPrefs"]["PartnerTaxEnabled"], false);
    us.stop().await;
    sb.stop().await;
}
