//! The count of unmapped corporate cards reaches Fyle's integration-settings service (the
//! sandbox's `PATCH /integrations/`) whenever it changes (#23): cards pulled from the Fyle
//! sandbox by fyle-sync, a card account pulled from the QBO sandbox by qbo-sync, operators
//! mapping and unmapping a card, the service failing for a while, and the card export object
//! changed to one that needs no card accounts.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_proto::v1::{
    CreateWorkspaceRequest, DeleteMappingRequest, ListDestinationAttributesRequest,
    SyncFyleDimensionsRequest, SyncQboDimensionsRequest, UpdateImportSettingsRequest,
    UpsertMappingRequest, WorkspaceSettings,
};
use attrsync_sandbox::{DEMO_ORG_ID, FaultAction, FaultRule, SandboxHandle, Side};
use serde_json::json;

use crate::{
    fyle_connection::{connect_demo_org, demo_sandbox},
    mapping_auto::{connect_qbo, import_settings, mapping_of},
};

const WAIT: Duration = Duration::from_secs(60);
const REALM: &str = "9130357766900456";
const PATCH: &str = "PATCH /integrations";

/// What the sandbox's integration-settings service holds for the demo org.
fn reported(sb: &SandboxHandle) -> (u64, u64) {
    let record = sb.fyle().integration(DEMO_ORG_ID).expect("installed");
    (
        record["unmapped_card_count"].as_u64().expect("count"),
        record["patches"].as_u64().expect("patches"),
    )
}

async fn wait_for_count(sb: &SandboxHandle, count: u64, what: &str) -> u64 {
    eventually(WAIT, what, || async {
        let (reported, patches) = reported(sb);
        Ok((reported == count).then_some(patches))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmapped_card_count_follows_cards_and_mappings_and_survives_a_failing_fyle() {
    let sb = demo_sandbox().await;
    let fast = |k: &str, v: &str| (format!("MAPPING__UNMAPPED_CARDS__{k}"), v.to_owned());
    let stack = TestStack::start_with_env(
        Vec::new(),
        vec![
            (
                "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
                sb.fyle_accounts_url().to_owned(),
            ),
            fast("URL", sb.fyle_accounts_url()),
            fast("TICK", "100ms"),
            fast("RETRY_INITIAL", "200ms"),
            fast("RETRY_MAX", "1s"),
        ],
    )
    .await
    .unwrap();
    let card_settings = |object: &str| {
        let mut import = import_settings();
        import.corporate_credit_card_expenses_object = Some(object.into());
        import
    };
    let workspace_id = stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: "Demo org".into(),
            fyle_org_id: DEMO_ORG_ID.into(),
            qbo_realm_id: Some(REALM.into()),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: Some(card_settings("CREDIT CARD PURCHASE")),
                webhook_flags: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap()
        .id;
    connect_demo_org(&stack, &sb, workspace_id).await;

    // The cards, pulled from Fyle (the demo org's and two more): none is mapped.
    for number in ["xxxx-xxxx-xxxx-1111", "xxxx-xxxx-xxxx-2222"] {
        sb.fyle()
            .create(
                DEMO_ORG_ID,
                "corporate_cards",
                json!({"bank_name": "Chase", "card_number": number, "cardholder_name": "Joanna"}),
            )
            .unwrap();
    }
    let cards = sb.fyle().ids(DEMO_ORG_ID, "corporate_cards");
    assert!(cards.len() >= 3, "{cards:?}");
    let total = cards.len() as u64;
    stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["CORPORATE_CARD".into()],
            incremental: false,
        })
        .await
        .unwrap();
    wait_for_count(&sb, total, "every card reported unmapped").await;

    // A card account from QBO, and an operator maps the first card to it.
    let qbo = connect_qbo(&stack, &sb, workspace_id).await;
    qbo.client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Account".into()],
            incremental: false,
        })
        .await
        .unwrap();
    let card_account = qbo
        .client
        .clone()
        .list_destination_attributes(ListDestinationAttributesRequest {
            workspace_id,
            attribute_type: Some("CREDIT_CARD_ACCOUNT".into()),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .into_iter()
        .next()
        .expect("the demo company has a credit card account");
    let upsert = || {
        let mut mapping = stack.mapping.clone();
        let (card, account) = (cards[0].clone(), card_account.destination_id.clone());
        async move {
            mapping
                .upsert_mapping(UpsertMappingRequest {
                    workspace_id,
                    source_type: "CORPORATE_CARD".into(),
                    source_id: card,
                    destination_type: "CREDIT_CARD_ACCOUNT".into(),
                    destination_id: account,
                    destination_display_name: None,
                })
                .await
        }
    };
    // mapping learns of the card account from qbo-sync's event a moment later.
    eventually(WAIT, "the card mapped", || async {
        Ok(upsert().await.ok())
    })
    .await
    .unwrap();
    let patches = wait_for_count(&sb, total - 1, "one card fewer unmapped").await;

    // Fyle's service fails twice: the count is sent again until it is taken, and the unmapping
    // it reports stands meanwhile.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: PATCH.into(),
        action: FaultAction::ServerError { status: 503 },
        skip: 0,
        times: Some(2),
    });
    let mapping = mapping_of(&stack, workspace_id, "CORPORATE_CARD", &cards[0])
        .await
        .unwrap();
    stack
        .mapping
        .clone()
        .delete_mapping(DeleteMappingRequest {
            workspace_id,
            mapping_id: mapping.id,
        })
        .await
        .unwrap();
    let after_outage =
        wait_for_count(&sb, total, "the unmapped card reported after the outage").await;
    assert_eq!(after_outage, patches + 1, "one accepted PATCH per change");
    assert!(
        sb.stats().count(Side::Fyle, PATCH) >= patches + 3,
        "two refused attempts before the accepted one"
    );
    assert!(
        mapping_of(&stack, workspace_id, "CORPORATE_CARD", &cards[0])
            .await
            .is_none()
    );

    // Card expenses exported as bills need no card accounts: nothing is unmapped that matters.
    stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(card_settings("BILL")),
            mapping_settings: Vec::new(),
        })
        .await
        .unwrap();
    let settled = wait_for_count(&sb, 0, "no count for bills").await;
    // Nothing changes any more: no further PATCH.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(reported(&sb), (0, settled));
    stack.stop().await;
    sb.stop().await;
}
