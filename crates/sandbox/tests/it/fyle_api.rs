//! Fyle endpoints F1–F8: OAuth, cluster lookup, profile, filters, writes and their errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Fyle, ORG, start, start_unthrottled};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_token_cluster_and_profile() {
    let sb = start().await;
    let http = reqwest::Client::new();
    let creds = sb.credentials();
    let c = &creds.fyle[0];
    assert_ne!(
        sb.fyle_accounts_url(),
        sb.fyle_url(),
        "accounts and data hosts are apart"
    );
    let token_url = format!("{}/oauth/token", sb.fyle_accounts_url());
    let call = |body: Value| {
        let http = http.clone();
        let url = token_url.clone();
        async move {
            let r = http.post(url).json(&body).send().await.expect("token call");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = call(
        json!({"grant_type": "refresh_token", "refresh_token": c.refresh_token,
        "client_id": c.client_id, "client_secret": c.client_secret}),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert!(
        body.get("refresh_token").is_none(),
        "refresh grant returns only an access token"
    );

    let (status, _) = call(
        json!({"grant_type": "refresh_token", "refresh_token": c.refresh_token,
        "client_id": c.client_id, "client_secret": "wrong"}),
    )
    .await;
    assert_eq!(status, 401, "wrong secret");
    let (status, _) = call(
        json!({"grant_type": "refresh_token", "refresh_token": c.refresh_token,
        "client_id": "tpaUnknown", "client_secret": "x"}),
    )
    .await;
    assert_eq!(status, 404, "unknown client");

    let code = sb.fyle().issue_code(ORG);
    let (status, body) = call(json!({"grant_type": "authorization_code", "code": code,
        "client_id": c.client_id, "client_secret": c.client_secret}))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["refresh_token"],
        c.refresh_token.as_str(),
        "code grant returns the refresh token"
    );

    for path in ["/oauth/cluster", "/oauth/cluster/"] {
        let r = http
            .post(format!("{}{path}", sb.fyle_accounts_url()))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .expect("cluster");
        assert_eq!(r.status(), 200, "{path}");
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["cluster_domain"], sb.fyle_url(), "{path}");
    }

    let fyle = Fyle {
        http: http.clone(),
        base: format!("{}/platform/v1", sb.fyle_url()),
        token,
    };
    let (status, me) = fyle.get("/spender/my_profile", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(me["data"]["org_id"], ORG);
    assert_eq!(me["data"]["org"]["id"], ORG);

    // One client is an integration app any org can authorize: another org's refresh token
    // and code, presented by the same client, give tokens for THAT org.
    let second = sb.fyle().add_org("orSecondOrg1");
    let (status, body) = call(
        json!({"grant_type": "refresh_token", "refresh_token": second.refresh_token,
        "client_id": c.client_id, "client_secret": c.client_secret}),
    )
    .await;
    assert_eq!(status, 200);
    let second_fyle = Fyle {
        http: http.clone(),
        base: fyle.base.clone(),
        token: body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
    };
    let (_, me) = second_fyle.get("/spender/my_profile", &[]).await;
    assert_eq!(me["data"]["org_id"], "orSecondOrg1");
    let code = sb.fyle().issue_code("orSecondOrg1");
    let (status, body) = call(json!({"grant_type": "authorization_code", "code": code,
        "client_id": c.client_id, "client_secret": c.client_secret}))
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["refresh_token"], second.refresh_token.as_str());

    let bad = Fyle {
        token: "nope".into(),
        ..fyle
    };
    let (status, body) = bad.get("/admin/categories", &[("order", "id")]).await;
    assert_eq!((status, body), (401, json!({"message": "invalid token"})));
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_lives_on_the_accounts_host_and_refuses_unknown_keys() {
    let sb = start().await;
    let http = reqwest::Client::new();
    let c = sb.credentials().fyle[0].clone();
    let good = json!({"grant_type": "refresh_token", "refresh_token": c.refresh_token,
        "client_id": c.client_id, "client_secret": c.client_secret});
    let on_data_host = http
        .post(format!("{}/oauth/token", sb.fyle_url()))
        .json(&good)
        .send()
        .await
        .expect("token call on the data host");
    assert_eq!(
        on_data_host.status(),
        404,
        "the cluster host has no token endpoint"
    );
    let on_accounts = http
        .post(format!(
            "{}/platform/v1/admin/categories",
            sb.fyle_accounts_url()
        ))
        .send()
        .await
        .expect("data call on the accounts host");
    assert_eq!(
        on_accounts.status(),
        404,
        "the accounts host has no data API"
    );

    let mut extra = good.clone();
    extra["scope"] = json!("admin");
    let r = http
        .post(format!("{}/oauth/token", sb.fyle_accounts_url()))
        .json(&extra)
        .send()
        .await
        .expect("token call");
    assert_eq!(r.status(), 400, "additionalProperties: false");
    let body: Value = r.json().await.expect("JSON");
    assert!(
        body["message"].as_str().expect("message").contains("scope"),
        "{body}"
    );
    let r = http
        .post(format!("{}/oauth/token", sb.fyle_accounts_url()))
        .json(&good)
        .send()
        .await
        .expect("token call");
    assert_eq!(r.status(), 200);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expire_after_an_hour() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    assert_eq!(
        fyle.get("/admin/categories", &[("order", "id")]).await.0,
        200
    );
    sb.clock().advance(Duration::from_secs(3601));
    let (status, body) = fyle.get("/admin/categories", &[("order", "id")]).await;
    assert_eq!((status, body), (401, json!({"message": "invalid token"})));
    let fresh = Fyle::connect(&sb).await;
    assert_eq!(
        fresh.get("/admin/categories", &[("order", "id")]).await.0,
        200,
        "a refreshed token works"
    );
    sb.stop().await;
}

async fn ids(fyle: &Fyle, path: &str, filters: &[(&str, &str)]) -> Vec<Value> {
    let mut q = vec![("order", "id")];
    q.extend_from_slice(filters);
    let (status, body) = fyle.get(path, &q).await;
    assert_eq!(status, 200, "{filters:?}: {body}");
    let data = body["data"].as_array().expect("data").clone();
    assert_eq!(
        body["count"].as_u64(),
        Some(data.len() as u64),
        "count agrees with data"
    );
    data.iter().map(|r| r["id"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_operator() {
    let sb = start_unthrottled().await;
    let fyle = Fyle::connect(&sb).await;
    let c = "/admin/categories";
    assert_eq!(
        ids(&fyle, c, &[("id", "eq.22330021")]).await,
        vec![json!(22330021)]
    );
    assert_eq!(
        ids(&fyle, c, &[("name", "neq.Travel")]).await,
        vec![json!(160956), json!(22330022)]
    );
    assert_eq!(
        ids(&fyle, c, &[("id", "in.(160956,22330022)")]).await,
        vec![json!(160956), json!(22330022)]
    );
    assert_eq!(
        ids(&fyle, c, &[("id", "not_in.(160956,22330022)")]).await,
        vec![json!(22330021)]
    );
    assert_eq!(
        ids(&fyle, c, &[("updated_at", "gte.2024-04-20T12:00:00.000Z")])
            .await
            .len(),
        2
    );
    assert_eq!(
        ids(&fyle, c, &[("updated_at", "gt.2024-04-20T12:00:00.000Z")]).await,
        vec![json!(22330021)]
    );
    assert_eq!(
        ids(&fyle, c, &[("updated_at", "lte.2024-04-20T12:00:00.000Z")])
            .await
            .len(),
        2
    );
    assert_eq!(
        ids(&fyle, c, &[("updated_at", "lt.2024-04-20T12:00:00.000Z")]).await,
        vec![json!(160956)]
    );
    assert_eq!(ids(&fyle, c, &[("sub_category", "is.null")]).await.len(), 2);
    assert_eq!(
        ids(&fyle, c, &[("name", "like.Off%")]).await,
        vec![json!(22330022)]
    );
    assert_eq!(
        ids(&fyle, c, &[("name", "like.off%")]).await,
        Vec::<Value>::new(),
        "like is case-sensitive"
    );
    assert_eq!(
        ids(&fyle, c, &[("name", "ilike.off%")]).await,
        vec![json!(22330022)]
    );
    assert_eq!(ids(&fyle, c, &[("is_enabled", "eq.True")]).await.len(), 3);
    let e = "/admin/employees";
    assert_eq!(
        ids(&fyle, e, &[("user->email", "eq.ashwin.t@fyle.in")]).await,
        vec![json!("ouJSY9XI9s9k")]
    );
    assert_eq!(ids(&fyle, e, &[("roles", "like.%ADMIN%")]).await.len(), 1);
    assert_eq!(
        ids(
            &fyle,
            e,
            &[
                ("has_accepted_invite", "eq.true"),
                ("is_enabled", "eq.true")
            ]
        )
        .await
        .len(),
        1
    );
    let f = "/admin/expense_fields";
    let custom = ids(
        &fyle,
        f,
        &[
            ("is_custom", "eq.true"),
            ("type", "eq.SELECT"),
            ("is_enabled", "eq.true"),
        ],
    )
    .await;
    assert_eq!(custom, vec![json!(229506)]);
    assert_eq!(
        ids(&fyle, f, &[("column_name", "eq.merchant")]).await,
        vec![json!(225221)]
    );
    assert_eq!(
        ids(
            &fyle,
            f,
            &[("column_name", "eq.project_id"), ("is_custom", "eq.False")]
        )
        .await,
        vec![json!(203020)]
    );

    let (status, _) = fyle.get(c, &[("is_enabled", "eq.maybe")]).await;
    assert_eq!(status, 400, "bad boolean operand");
    let (status, _) = fyle.get(c, &[("colour", "eq.red")]).await;
    assert_eq!(status, 400, "unknown column");
    let (status, _) = fyle.get(c, &[("id", "approx.1")]).await;
    assert_eq!(status, 400, "unknown operator");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_at_gte_returns_a_row_right_after_it_changed() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let (_, page) = fyle
        .get(
            "/admin/categories",
            &[("order", "updated_at.desc"), ("limit", "1")],
        )
        .await;
    let watermark = page["data"][0]["updated_at"]
        .as_str()
        .expect("updated_at")
        .to_owned();
    let (status, out) = fyle
        .post(
            "/admin/categories",
            &json!({"data": {"id": 160956, "name": "Unspecified", "is_enabled": false}}),
        )
        .await;
    assert_eq!(status, 200, "{out}");
    assert!(out["data"]["updated_at"].as_str().expect("updated_at") > watermark.as_str());
    let (_, since) = fyle
        .get(
            "/admin/categories",
            &[
                ("order", "updated_at.desc"),
                ("updated_at", &format!("gte.{watermark}")),
            ],
        )
        .await;
    let got: Vec<Value> = since["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert!(
        got.contains(&json!(160956)),
        "the updated row is returned: {got:?}"
    );
    assert_eq!(since["data"][0]["is_enabled"], false);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_and_bulk_writes_with_their_errors() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let (status, created) = fyle
        .post(
            "/admin/categories",
            &json!({"data": {"name": "Meals", "sub_category": "Team"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(created["data"]["display_name"], "Meals / Team");
    assert_eq!(created["data"]["org_id"], ORG);

    let (status, body) = fyle
        .post(
            "/admin/categories",
            &json!({"data": {"name": "Meals", "sub_category": "Team"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "IntegrityError");
    assert_eq!(body["data"], Value::Null);

    let (status, body) = fyle
        .post("/admin/categories", &json!({"data": {"code": "1"}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "ValidationError");
    assert!(body["data"]["name"].is_array());

    let bulk = json!({"data": [
        {"name": "Advertising", "code": "7", "is_enabled": true},
        {"name": "Old Travel", "code": "88", "is_enabled": false},
        {"code": "99"}
    ]});
    let (status, body) = fyle.post("/admin/categories/bulk", &bulk).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "BulkError");
    assert_eq!(body["data"][0]["row"], 2);
    let (_, list) = fyle
        .get(
            "/admin/categories",
            &[("order", "id"), ("name", "eq.Advertising")],
        )
        .await;
    assert_eq!(list["count"], 0, "a failed bulk applies nothing");

    let bulk = json!({"data": [{"name": "Advertising", "code": "7"}, {"id": 22330021, "name": "Travel", "is_enabled": false}]});
    let (status, body) = fyle.post("/admin/categories/bulk", &bulk).await;
    assert_eq!((status, body), (200, json!({})));
    let (_, list) = fyle
        .get(
            "/admin/categories",
            &[("order", "id"), ("is_enabled", "eq.false")],
        )
        .await;
    assert_eq!(list["data"][0]["id"], 22330021, "bulk row with id updates");
    assert_eq!(
        list["data"][0]["sub_category"], "Flight",
        "update keeps unspecified fields"
    );

    let (status, body) = fyle
        .post(
            "/admin/tax_groups/bulk",
            &json!({"data": [{"name": "20.0% S @20%", "is_enabled": true, "percentage": 0.2}]}),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));
    let (status, _) = fyle
        .post("/admin/expense_fields/bulk", &json!({"data": []}))
        .await;
    assert_eq!(status, 405, "expense fields have no bulk endpoint");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expense_field_posts_replace_options_and_merchants_follow() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let merchant = json!({"data": {"id": 225221, "field_name": "Merchant", "type": "SELECT",
        "options": ["ADP", "Books by Bessie", "Goner", "New Vendor"], "placeholder": "E.g. Uber",
        "category_ids": [259385, 259386], "is_enabled": true, "is_custom": false, "is_mandatory": false,
        "code": null, "default_value": ""}});
    let (status, out) = fyle.post("/admin/expense_fields", &merchant).await;
    assert_eq!(status, 200, "is_custom is accepted: {out}");
    assert_eq!(out["data"]["column_name"], "merchant");
    let (_, merchants) = fyle.get("/admin/merchants", &[("order", "id")]).await;
    assert_eq!(merchants["count"], 4);
    assert_eq!(merchants["data"][3]["display_name"], "New Vendor");

    let luke = json!({"data": {"id": 229506, "field_name": "Luke", "type": "SELECT", "is_enabled": true,
        "is_mandatory": false, "placeholder": "Select Luke", "options": ["Adidas", "cc1"], "code": null}});
    let (status, out) = fyle.post("/admin/expense_fields", &luke).await;
    assert_eq!(status, 200);
    assert_eq!(
        out["data"]["options"],
        json!(["Adidas", "cc1"]),
        "options replaced wholesale"
    );

    let new_field = json!({"data": {"field_name": "Region", "type": "SELECT", "is_enabled": true, "is_mandatory": false, "options": ["North"]}});
    let (status, out) = fyle.post("/admin/expense_fields", &new_field).await;
    assert_eq!(status, 200);
    assert!(
        out["data"]["column_name"]
            .as_str()
            .expect("column")
            .starts_with("text_column")
    );

    let (status, _) = fyle
        .get(
            "/admin/dependent_expense_field_values",
            &[("order", "id.desc")],
        )
        .await;
    assert_eq!(status, 400, "parent and field filters are required");
    let (status, deps) = fyle
        .get(
            "/admin/dependent_expense_field_values",
            &[
                ("order", "id.desc"),
                ("expense_field_id", "eq.229510"),
                ("parent_expense_field_id", "eq.203020"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(deps["count"], 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_stored_and_listed() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let (status, out) = fyle
        .post(
            "/admin/subscriptions",
            &json!({"data": {"is_enabled": true, "webhook_url": "http://127.0.0.1:9/x",
            "subscribed_resources": ["CATEGORY", "PROJECT"]}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(out["data"]["org_id"], ORG);
    let (_, list) = fyle
        .get("/admin/subscriptions", &[("order", "id.asc")])
        .await;
    assert_eq!(list["count"], 1);
    assert_eq!(
        list["data"][0]["subscribed_resources"],
        json!(["CATEGORY", "PROJECT"])
    );
    sb.stop().await;
}

/// Fyle's integration-settings service: `PATCH /integrations/` with the org's access token sets
/// the counts of the org's installed integration; without a token, without `tpa_name` or with a
/// mistyped count it changes nothing; another integration's name is answered and ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_settings_take_counts_from_the_orgs_token_only() {
    let sb = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/integrations/", sb.fyle_accounts_url());
    let token = sb.fyle().access_token(ORG);
    let patch = |bearer: Option<String>, body: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut request = http.patch(url).json(&body);
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let r = request.send().await.expect("PATCH");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    let qbo = "Fyle Quickbooks Integration";
    let (status, _) = patch(None, json!({"tpa_name": qbo, "unmapped_card_count": 3})).await;
    assert_eq!(status, 401);
    let (status, _) = patch(
        Some("not-a-token".into()),
        json!({"tpa_name": qbo, "unmapped_card_count": 3}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = patch(Some(token.clone()), json!({"unmapped_card_count": 3})).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (400, Some("tpa_name is required"))
    );
    let (status, _) = patch(
        Some(token.clone()),
        json!({"tpa_name": qbo, "unmapped_card_count": "three"}),
    )
    .await;
    assert_eq!(status, 400);
    let untouched = sb.fyle().integration(ORG).expect("installed");
    assert_eq!(
        (
            untouched["unmapped_card_count"].as_u64(),
            untouched["patches"].as_u64()
        ),
        (Some(0), Some(0))
    );

    let (status, body) = patch(
        Some(token.clone()),
        json!({"tpa_name": "Fyle Xero Integration", "unmapped_card_count": 9}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["message"].is_string(), "{body}");
    let (status, body) = patch(
        Some(token),
        json!({"tpa_name": qbo, "unmapped_card_count": 3}),
    )
    .await;
    assert_eq!(
        (status, body["unmapped_card_count"].as_u64()),
        (200, Some(3))
    );
    let stored = sb.fyle().integration(ORG).expect("installed");
    assert_eq!(
        (
            stored["unmapped_card_count"].as_u64(),
            stored["patches"].as_u64()
        ),
        (Some(3), Some(1))
    );
}
