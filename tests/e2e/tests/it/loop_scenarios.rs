//! The loop's scenarios 4 and 5 over all five services, the real stack and both sandboxes,
//! with webhooks flowing both ways: Fyle's to ingest through the subscription ConnectFyle
//! registers, QBO's to ingest signed. What is asserted is what a user sees: the vendor in
//! QuickBooks, the value in Fyle, the mapping, the webhook health.
//!
//! 4. An employee created in Fyle becomes one QBO vendor (the workspace auto-creates employees
//!    as vendors) and is mapped to it — no job, no call by the test.
//! 5. One webhook lost on each side (the sandbox drops it): qbo-sync's reconcile finds the QBO
//!    account, which then becomes a mapped Fyle category; fyle-sync's finds the Fyle category
//!    disabled, which mapping then flags. Both services count the miss in the workspace's
//!    webhook health.

use std::time::Instant;

use attrsync_e2e::eventually;
use attrsync_proto::v1::{AutoMapEmployees, EmployeeFieldMapping, ImportSettings, MappingState};
use attrsync_sandbox::{DEMO_ORG_ID, Side, WebhookFaultAction, WebhookFaultRule};
use serde_json::json;

use crate::import_to_fyle::{LoopSetup, REALM, WAIT, the_loop_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fyle_employee_is_auto_created_as_one_qbo_vendor_and_mapped_to_it() {
    let l = the_loop_with(LoopSetup {
        fyle_webhooks: true,
        import_settings: ImportSettings {
            import_categories: true,
            auto_create_destination_entity: true,
            employee_field_mapping: EmployeeFieldMapping::Vendor as i32,
            auto_map_employees: AutoMapEmployees::Email as i32,
            ..Default::default()
        },
        ..LoopSetup::default()
    })
    .await;

    let started = Instant::now();
    let employee =
        l.sb.fyle()
            .create(
                DEMO_ORG_ID,
                "employees",
                json!({"user": {"email": "grace.hopper@example.com", "full_name": "Grace Hopper"},
                   "code": "E-GH", "is_enabled": true, "has_accepted_invite": true}),
            )
            .unwrap();
    let employee_id = employee["id"].as_str().unwrap();
    let mapping = l.mapping_of("EMPLOYEE", employee_id, "VENDOR").await;
    println!(
        "Fyle employee {employee_id} → QBO vendor {} → mapping in {:?}",
        mapping.destination_id,
        started.elapsed()
    );

    let vendors = crate::qbo_auto_create::named(&l.sb, "Vendor", "Grace Hopper").await;
    assert_eq!(vendors.len(), 1, "one vendor in QBO: {vendors:?}");
    assert_eq!(
        vendors[0]["PrimaryEmailAddr"]["Address"],
        "grace.hopper@example.com"
    );
    assert_eq!(mapping.destination_id, vendors[0]["Id"].as_str().unwrap());
    assert_eq!(mapping.source_value, "grace.hopper@example.com");
    assert!(mapping.auto_mapped);
    // Once both sides' change events have reached mapping, the mapping is plainly OK.
    eventually(WAIT, "the employee's mapping OK on both sides", || async {
        let m = l.mapping_of("EMPLOYEE", employee_id, "VENDOR").await;
        Ok((m.state() == MappingState::Ok).then_some(m))
    })
    .await
    .unwrap();
    // The vendor's own webhook (QBO announces the creation) makes no second vendor.
    let stored = crate::qbo_auto_create::named(&l.sb, "Vendor", "Grace Hopper").await;
    assert_eq!(stored.len(), 1);
    l.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_lost_on_each_side_is_repaired_by_the_reconciles_and_shows_in_webhook_health() {
    let l = the_loop_with(LoopSetup {
        fyle_webhooks: true,
        qbo_env: crate::qbo_reconcile::fast_rounds(),
        ..LoopSetup::default()
    })
    .await;
    l.import_now("CATEGORY").await;

    // QBO side: the webhook announcing a new account is lost.
    l.sb.faults().add_webhook(WebhookFaultRule {
        side: Some(Side::Qbo),
        action: WebhookFaultAction::Drop,
        skip: 0,
        times: Some(1),
    });
    let account =
        l.sb.qbo()
            .create(
                REALM,
                "Account",
                json!({"Name": "Lost Webhook Lodging", "AccountType": "Expense"}),
            )
            .unwrap();
    let account_id = account["Id"].as_str().unwrap();
    // qbo-sync's reconcile finds it; the rest of the loop follows as if the webhook had come.
    let category = l.enabled_value("CATEGORY", "Lost Webhook Lodging").await;
    let mapping = l
        .mapping_of("CATEGORY", &category.source_id, "ACCOUNT")
        .await;
    assert_eq!(mapping.destination_id, account_id);
    eventually(WAIT, "the miss in qbo-sync's webhook health", || async {
        let status = crate::qbo_reconcile::status(&l.qbo, l.workspace_id).await;
        let missed =
            crate::qbo_reconcile::entity(&status, "Account").map_or(0, |e| e.missed_webhooks);
        let total = status.health.map_or(0, |h| h.missed_total);
        Ok((missed >= 1 && total >= 1).then_some(()))
    })
    .await
    .unwrap();

    // Fyle side: the webhook announcing that category's disabling in Fyle is lost.
    let fyle_before = crate::fyle_reconcile::status(&l.stack, l.workspace_id).await;
    let fyle_missed_before = crate::fyle_reconcile::category(&fyle_before).missed_webhooks;
    l.sb.faults().add_webhook(WebhookFaultRule {
        side: Some(Side::Fyle),
        action: WebhookFaultAction::Drop,
        skip: 0,
        times: Some(1),
    });
    l.sb.fyle()
        .set_enabled(DEMO_ORG_ID, "categories", &category.source_id, false)
        .unwrap();
    // fyle-sync's reconcile finds it; mapping flags the mapping's source as inactive.
    eventually(WAIT, "the disabled category's mapping flagged", || async {
        let m = l
            .mapping_of("CATEGORY", &category.source_id, "ACCOUNT")
            .await;
        Ok((!m.source_active).then_some(m))
    })
    .await
    .unwrap();
    let stored = l
        .fyle_values("CATEGORY")
        .await
        .into_iter()
        .find(|a| a.source_id == category.source_id)
        .unwrap();
    assert!(!stored.active, "fyle-sync stores the category disabled");
    eventually(WAIT, "the miss in fyle-sync's webhook health", || async {
        let status = crate::fyle_reconcile::status(&l.stack, l.workspace_id).await;
        let missed = crate::fyle_reconcile::category(&status).missed_webhooks;
        let total = status.health.map_or(0, |h| h.missed_total);
        Ok((missed > fyle_missed_before && total >= 1).then_some(()))
    })
    .await
    .unwrap();
    // Never re-enabled (#44): import-to-fyle leaves a category Fyle disabled alone.
    assert_eq!(
        l.in_fyle("categories", &category.source_id)["is_enabled"],
        false
    );
    l.stop().await;
}
