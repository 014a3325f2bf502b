//! mapping's `UpdateImportSettings` and `ListMappingSettings` over the real stack: settings
//! validated and normalised, stored with the mapping settings, published in the snapshot, and
//! the `ImportRequested` commands they imply on `imports.commands.v1` (#59–#61); the code
//! prefix fixed once a category import has run (from import-to-fyle's `imports.events.v1`); a
//! refused change saves nothing; a retargeted source loses its auto-made mappings, keeps the
//! operator's and is auto-mapped afresh in the same call; turning items off removes the
//! category → item mappings and asks for `disable_items`.

use std::time::Duration;

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::{TestStack, eventually};
use attrsync_kafka::topics;
use attrsync_proto::{
    Payload,
    v1::{
        ChangeKind, DestinationAttributeChange, ExpenseAttributeChange, GetWorkspaceRequest,
        ImportCompleted, ImportRequested, ImportSettings, ImportStatus, ListMappingSettingsRequest,
        MappingSetting, UpdateImportSettingsRequest, UpsertMappingRequest, WorkspaceSnapshot,
    },
};
use diesel::sql_types::BigInt;

use crate::{
    kafka_reader::read_until,
    mapping_auto::{fyle_side, import_settings, mapping_of, mappings, qbo_side, workspace},
};

const WAIT: Duration = Duration::from_secs(60);

fn setting(source: &str, destination: &str, import_to_fyle: bool) -> MappingSetting {
    MappingSetting {
        source_field: source.into(),
        destination_field: destination.into(),
        import_to_fyle,
        ..Default::default()
    }
}

async fn update(
    stack: &TestStack,
    workspace_id: i64,
    import: ImportSettings,
    mapping_settings: Vec<MappingSetting>,
) -> Result<WorkspaceSnapshot, tonic::Status> {
    stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(import),
            mapping_settings,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn version(stack: &TestStack, workspace_id: i64) -> i64 {
    stack
        .mapping
        .clone()
        .get_workspace(GetWorkspaceRequest { workspace_id })
        .await
        .unwrap()
        .into_inner()
        .version
}

/// The `ImportRequested` commands published for `workspace_id`, read until `stop` holds.
async fn commands(
    stack: &TestStack,
    workspace_id: i64,
    stop: impl Fn(&[ImportRequested]) -> bool,
) -> Vec<ImportRequested> {
    let decode = |payload: &[u8]| {
        let envelope = attrsync_kafka::envelope::decode(payload).ok()?;
        if envelope.workspace_id != workspace_id {
            return None;
        }
        match envelope.payload {
            Some(Payload::ImportRequested(c)) => Some(c),
            _ => None,
        }
    };
    let raws = read_until(&stack.topic(topics::IMPORT_COMMANDS), WAIT, |seen| {
        let decoded: Vec<ImportRequested> =
            seen.iter().filter_map(|r| decode(&r.payload)).collect();
        stop(&decoded)
    })
    .await
    .unwrap();
    raws.iter().filter_map(|r| decode(&r.payload)).collect()
}

fn destination(
    attribute_type: &str,
    display_name: &str,
    id: &str,
    value: &str,
) -> DestinationAttributeChange {
    DestinationAttributeChange {
        attribute_type: attribute_type.into(),
        destination_id: id.into(),
        value: value.into(),
        active: true,
        kind: ChangeKind::Created as i32,
        display_name: display_name.into(),
        ..Default::default()
    }
}

fn source(attribute_type: &str, id: &str, value: &str) -> ExpenseAttributeChange {
    ExpenseAttributeChange {
        attribute_type: attribute_type.into(),
        source_id: id.into(),
        value: value.into(),
        active: true,
        kind: ChangeKind::Created as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_settings_are_validated_normalised_published_and_turned_into_import_commands() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;

    let mut import = import_settings();
    import.import_tax_codes = true;
    // A custom setting that imports is imported before it is saved (#64): with import-to-fyle
    // not running here, the change is refused as unavailable and nothing is saved.
    let before = version(&stack, workspace_id).await;
    let unavailable = update(
        &stack,
        workspace_id,
        import.clone(),
        vec![setting("Cost Code", "DEPARTMENT", true)],
    )
    .await
    .unwrap_err();
    assert_eq!(unavailable.code(), tonic::Code::Unavailable);
    assert_eq!(version(&stack, workspace_id).await, before, "nothing saved");

    let submitted = vec![
        MappingSetting {
            is_custom: false,
            ..setting("custom:Cost Code", "department", false)
        },
        setting(" project ", "CUSTOMER", true),
    ];
    let snapshot = update(&stack, workspace_id, import.clone(), submitted.clone())
        .await
        .unwrap();
    let expected = vec![
        setting("CATEGORY", "ACCOUNT", false),
        setting("PROJECT", "CUSTOMER", true),
        MappingSetting {
            is_custom: true,
            ..setting("COST_CODE", "DEPARTMENT", false)
        },
        setting("TAX_GROUP", "TAX_CODE", true),
    ];
    assert_eq!(snapshot.settings.unwrap().mapping_settings, expected);
    let listed = stack
        .mapping
        .clone()
        .list_mapping_settings(ListMappingSettingsRequest { workspace_id })
        .await
        .unwrap()
        .into_inner()
        .mapping_settings;
    assert_eq!(listed, expected);

    // The same request again changes the settings to what they are: no command.
    update(&stack, workspace_id, import.clone(), submitted.clone())
        .await
        .unwrap();

    // Refused requests name the field and save nothing.
    let before = version(&stack, workspace_id).await;
    for (bad_import, bad_settings, field) in [
        (
            import.clone(),
            vec![setting("PROJECT", "NOT_A_FIELD", true)],
            "mapping_settings",
        ),
        (
            import.clone(),
            vec![
                setting("PROJECT", "CLASS", true),
                setting("Project", "CUSTOMER", true),
            ],
            "mapping_settings",
        ),
        (
            ImportSettings {
                import_code_fields: vec!["CUSTOMER".into()],
                ..import.clone()
            },
            submitted.clone(),
            "import_code_fields",
        ),
    ] {
        let refused = update(&stack, workspace_id, bad_import, bad_settings)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    assert_eq!(version(&stack, workspace_id).await, before, "nothing saved");

    // Turning categories on asks for a full category import.
    import.import_categories = true;
    let last = update(&stack, workspace_id, import, submitted)
        .await
        .unwrap();

    let published = commands(&stack, workspace_id, |seen| {
        seen.iter().any(|c| c.source_field == "CATEGORY")
    })
    .await;
    let summary: Vec<(&str, &str, bool)> = published
        .iter()
        .map(|c| (c.source_field.as_str(), c.reason.as_str(), c.full))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("PROJECT", "settings_changed", true),
            ("TAX_GROUP", "settings_changed", true),
            ("CATEGORY", "settings_changed", true),
        ],
        "one command per imported field that changed; none for the repeat or the refusals"
    );

    // Every service's projection gets the mapping settings with the snapshot.
    let topic = stack.topic(topics::WORKSPACE_SETTINGS);
    let last_version = last.version;
    let decode = |payload: &[u8]| match attrsync_kafka::envelope::decode(payload).ok()?.payload {
        Some(Payload::WorkspaceSnapshot(s)) if s.version == last_version => Some(s),
        _ => None,
    };
    let raws = read_until(&topic, WAIT, |seen| {
        seen.iter().any(|r| decode(&r.payload).is_some())
    })
    .await
    .unwrap();
    let published = raws.iter().find_map(|r| decode(&r.payload)).unwrap();
    assert_eq!(published.settings.unwrap().mapping_settings, expected);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_fields_are_fixed_once_a_category_import_has_run_and_a_refused_change_saves_nothing() {
    let stack = TestStack::start().await.unwrap();
    // A code field once chosen cannot be removed, import or not.
    let with_codes = ImportSettings {
        import_code_fields: vec!["ACCOUNT".into()],
        ..import_settings()
    };
    let (coded, _) = workspace(&stack, None, with_codes).await;
    let refused = update(&stack, coded, import_settings(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("Cannot change the code fields once they are imported"),
        "{}",
        refused.message()
    );

    // Adding one is allowed until a category import has run: a skipped run does not count.
    let (imported, _) = workspace(&stack, None, import_settings()).await;
    let (skipped, _) = workspace(&stack, None, import_settings()).await;
    for (workspace_id, status) in [
        (skipped, ImportStatus::Skipped),
        (imported, ImportStatus::Failed),
    ] {
        stack
            .publish_directly(
                topics::IMPORT_EVENTS,
                workspace_id,
                ImportCompleted {
                    source_field: "CATEGORY".into(),
                    status: status as i32,
                    values_posted: 3,
                    error: String::new(),
                },
            )
            .await
            .unwrap();
    }
    // One partition: once the second event is recorded, the first has been consumed.
    eventually(WAIT, "the category import recorded", || {
        let url = stack.database.url.clone();
        async move {
            let mut db = AsyncPgConnection::establish(&url).await?;
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let count: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM mapping.field_imports WHERE workspace_id = $1",
            )
            .bind::<BigInt, _>(imported)
            .get_result(&mut db)
            .await?;
            Ok((count.n == 1).then_some(()))
        }
    })
    .await
    .unwrap();
    let add_codes = ImportSettings {
        import_code_fields: vec!["ACCOUNT".into()],
        ..import_settings()
    };
    let before = version(&stack, imported).await;
    let refused = update(&stack, imported, add_codes.clone(), Vec::new())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(version(&stack, imported).await, before, "nothing saved");
    let stored = stack
        .mapping
        .clone()
        .get_import_settings(GetWorkspaceRequest {
            workspace_id: imported,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.import_code_fields.is_empty());

    let accepted = update(&stack, skipped, add_codes, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        accepted
            .settings
            .unwrap()
            .import_settings
            .unwrap()
            .import_code_fields,
        ["ACCOUNT"]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retargeted_source_loses_its_auto_mappings_keeps_the_operators_and_is_mapped_afresh() {
    let stack = TestStack::start().await.unwrap();
    // No mapping settings yet: the incumbent's defaults map projects to customers.
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;
    qbo_side(
        &stack,
        workspace_id,
        vec![
            destination("CUSTOMER", "customer", "c1", "apollo"),
            destination("CUSTOMER", "customer", "c2", "Zeus"),
            destination("CLASS", "class", "k1", "Apollo"),
            destination("CLASS", "class", "k2", "ZEUS"),
        ],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![
            source("PROJECT", "p1", "Apollo"),
            source("PROJECT", "p2", "Zeus"),
        ],
    )
    .await;
    eventually(WAIT, "both projects mapped to customers", || async {
        let m = mappings(&stack, workspace_id, "PROJECT").await;
        Ok((m.len() == 2).then_some(()))
    })
    .await
    .unwrap();
    // The operator confirms p2 → c2: it is theirs now.
    stack
        .mapping
        .clone()
        .upsert_mapping(UpsertMappingRequest {
            workspace_id,
            source_type: "PROJECT".into(),
            source_id: "p2".into(),
            destination_type: "CUSTOMER".into(),
            destination_id: "c2".into(),
            destination_display_name: None,
        })
        .await
        .unwrap();

    update(
        &stack,
        workspace_id,
        import_settings(),
        vec![setting("PROJECT", "CLASS", false)],
    )
    .await
    .unwrap();

    // Done in the call's own transaction: no waiting.
    let mut now: Vec<(String, String, String, bool)> = mappings(&stack, workspace_id, "PROJECT")
        .await
        .into_iter()
        .map(|m| {
            (
                m.source_id,
                m.destination_type,
                m.destination_id,
                m.auto_mapped,
            )
        })
        .collect();
    now.sort();
    assert_eq!(
        now,
        vec![
            ("p1".into(), "CLASS".into(), "k1".into(), true),
            ("p2".into(), "CLASS".into(), "k2".into(), true),
            ("p2".into(), "CUSTOMER".into(), "c2".into(), false),
        ],
        "p1's auto mapping to a customer is gone, the operator's p2 → c2 stays, both map to classes"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_import_items_off_removes_item_mappings_and_asks_for_disable_items() {
    let stack = TestStack::start().await.unwrap();
    let with_items = ImportSettings {
        import_categories: true,
        import_items: true,
        ..import_settings()
    };
    let (workspace_id, _) = workspace(&stack, None, with_items.clone()).await;
    qbo_side(
        &stack,
        workspace_id,
        vec![
            destination("ACCOUNT", "Item", "9", "widget"),
            destination("ACCOUNT", "Account", "a1", "Paper"),
        ],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![
            source("CATEGORY", "501", "Widget"),
            source("CATEGORY", "502", "Paper"),
            source("CATEGORY", "503", "Ink"),
        ],
    )
    .await;
    let mapped = eventually(WAIT, "the category mapped to the item", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "501").await)
    })
    .await
    .unwrap();
    assert_eq!(mapped.destination_display_name, "Item");
    eventually(WAIT, "the category mapped to the account", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "502").await)
    })
    .await
    .unwrap();
    // An operator maps Ink to the account too.
    stack
        .mapping
        .clone()
        .upsert_mapping(UpsertMappingRequest {
            workspace_id,
            source_type: "CATEGORY".into(),
            source_id: "503".into(),
            destination_type: "ACCOUNT".into(),
            destination_id: "a1".into(),
            destination_display_name: Some("Account".into()),
        })
        .await
        .unwrap();

    update(
        &stack,
        workspace_id,
        ImportSettings {
            import_items: false,
            ..with_items
        },
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(
        mapping_of(&stack, workspace_id, "CATEGORY", "501").await,
        None,
        "the item mapping went with the setting (#59)"
    );
    for kept in ["502", "503"] {
        let m = mapping_of(&stack, workspace_id, "CATEGORY", kept)
            .await
            .unwrap_or_else(|| panic!("category {kept}'s account mapping stays"));
        assert_eq!(m.destination_id, "a1");
    }
    let published = commands(&stack, workspace_id, |seen| !seen.is_empty()).await;
    assert_eq!(published[0].source_field, "CATEGORY");
    assert_eq!(published[0].reason, "disable_items");
    assert_eq!(
        published[0].disable_source_ids,
        ["501"],
        "exactly the categories that were mapped to items are to be disabled"
    );
    assert_eq!(
        published[0].settings_version,
        version(&stack, workspace_id).await,
        "the command names the snapshot it was decided on"
    );
    stack.stop().await;
}

/// §2.4: with employees auto-mapped and card expenses not exported as bills, every employee
/// without a card account maps to the workspace's default card account — at once when the
/// setting is saved, and as each new employee arrives — while an operator's card mapping
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn employees_without_a_card_account_map_to_the_default_one_and_an_operators_stays() {
    let stack = TestStack::start().await.unwrap();
    let mut import = ImportSettings {
        corporate_credit_card_expenses_object: Some("CREDIT CARD PURCHASE".into()),
        ..import_settings()
    };
    import.set_auto_map_employees(attrsync_proto::v1::AutoMapEmployees::Email);
    let (workspace_id, _) = workspace(&stack, None, import.clone()).await;
    qbo_side(
        &stack,
        workspace_id,
        vec![
            destination("CREDIT_CARD_ACCOUNT", "CreditCard", "cc9", "Amex Corporate"),
            destination("CREDIT_CARD_ACCOUNT", "CreditCard", "cc7", "Visa Team"),
        ],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![
            source("EMPLOYEE", "ou1", "ada@example.com"),
            source("EMPLOYEE", "ou2", "bob@example.com"),
        ],
    )
    .await;
    // The operator gives Bob the team card (once both sides are projected).
    eventually(WAIT, "the operator's card mapping", || async {
        Ok(stack
            .mapping
            .clone()
            .upsert_mapping(UpsertMappingRequest {
                workspace_id,
                source_type: "EMPLOYEE".into(),
                source_id: "ou2".into(),
                destination_type: "CREDIT_CARD_ACCOUNT".into(),
                destination_id: "cc7".into(),
                destination_display_name: None,
            })
            .await
            .ok())
    })
    .await
    .unwrap();
    let cards = || async {
        let mut cards: Vec<(String, String, bool)> = mappings(&stack, workspace_id, "EMPLOYEE")
            .await
            .into_iter()
            .filter(|m| m.destination_type == "CREDIT_CARD_ACCOUNT")
            .map(|m| (m.source_id, m.destination_id, m.auto_mapped))
            .collect();
        cards.sort();
        cards
    };
    assert_eq!(cards().await, [("ou2".into(), "cc7".into(), false)]);

    import.default_ccc_account_id = Some("cc9".into());
    update(&stack, workspace_id, import, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        cards().await,
        [
            ("ou1".into(), "cc9".into(), true),
            ("ou2".into(), "cc7".into(), false)
        ],
        "mapped in the settings change itself; the operator's card stays"
    );

    fyle_side(
        &stack,
        workspace_id,
        vec![source("EMPLOYEE", "ou3", "cy@example.com")],
    )
    .await;
    eventually(WAIT, "the new employee on the default card", || async {
        Ok(cards()
            .await
            .contains(&("ou3".into(), "cc9".into(), true))
            .then_some(()))
    })
    .await
    .unwrap();

    // A default account mapping has not seen yet: an employee without a card maps to it the
    // moment both are there, whichever arrives first.
    let mut import = import_settings();
    import.set_auto_map_employees(attrsync_proto::v1::AutoMapEmployees::Email);
    import.corporate_credit_card_expenses_object = Some("CREDIT CARD PURCHASE".into());
    import.default_ccc_account_id = Some("cc11".into());
    update(&stack, workspace_id, import, Vec::new())
        .await
        .unwrap();
    fyle_side(
        &stack,
        workspace_id,
        vec![source("EMPLOYEE", "ou4", "di@example.com")],
    )
    .await;
    qbo_side(
        &stack,
        workspace_id,
        vec![destination(
            "CREDIT_CARD_ACCOUNT",
            "CreditCard",
            "cc11",
            "Ramp Card",
        )],
    )
    .await;
    eventually(
        WAIT,
        "the waiting employee on the new default card",
        || async {
            Ok(cards()
                .await
                .contains(&("ou4".into(), "cc11".into(), true))
                .then_some(()))
        },
    )
    .await
    .unwrap();
    assert!(
        cards().await.contains(&("ou1".into(), "cc9".into(), true)),
        "a card mapping made before is kept"
    );
    stack.stop().await;
}

/// A workspace created with a default card account holding a NUL character is refused naming
/// the field — it never reaches the table (where PostgreSQL would refuse it as a database error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_workspace_refuses_free_text_settings_with_control_characters() {
    let stack = TestStack::start().await.unwrap();
    let refused = stack
        .mapping
        .clone()
        .create_workspace(attrsync_proto::v1::CreateWorkspaceRequest {
            name: "NUL card".into(),
            fyle_org_id: format!("or{}", &ulid::Ulid::new().to_string()[14..]),
            settings: Some(attrsync_proto::v1::WorkspaceSettings {
                import_settings: Some(ImportSettings {
                    default_ccc_account_id: Some("cc\u{0}9".into()),
                    ..import_settings()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("default_ccc_account_id"),
        "{}",
        refused.message()
    );
    stack.stop().await;
}

/// A QBO employee change visits only the Fyle employees not mapped yet: an employee already
/// mapped to it is not auto-mapped again, so the default card an operator removed from them is
/// not put back behind the operator's back (the set-based rewrite had briefly lost this filter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qbo_employee_change_does_not_remap_a_mapped_employee_or_restore_a_removed_card() {
    let stack = TestStack::start().await.unwrap();
    let mut import = ImportSettings {
        corporate_credit_card_expenses_object: Some("CREDIT CARD PURCHASE".into()),
        default_ccc_account_id: Some("cc9".into()),
        ..import_settings()
    };
    import.set_auto_map_employees(attrsync_proto::v1::AutoMapEmployees::Email);
    let (workspace_id, _) = workspace(&stack, None, import).await;
    let qbo_employee = |value: &str| DestinationAttributeChange {
        detail_json: serde_json::json!({"email": "Ada@Example.com"}).to_string(),
        ..destination("EMPLOYEE", "Employee", "e1", value)
    };
    qbo_side(
        &stack,
        workspace_id,
        vec![
            destination("CREDIT_CARD_ACCOUNT", "CreditCard", "cc9", "Amex Corporate"),
            qbo_employee("Ada Lovelace"),
        ],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![source("EMPLOYEE", "ou1", "ada@example.com")],
    )
    .await;
    let by_type = || async {
        let mut found: Vec<(String, String, i64)> = mappings(&stack, workspace_id, "EMPLOYEE")
            .await
            .into_iter()
            .map(|m| (m.destination_type, m.destination_id, m.id))
            .collect();
        found.sort();
        found
    };
    let both = eventually(WAIT, "the employee and card mappings", || async {
        let found = by_type().await;
        Ok((found.len() == 2).then_some(found))
    })
    .await
    .unwrap();
    assert_eq!(
        (both[0].0.as_str(), both[0].1.as_str()),
        ("CREDIT_CARD_ACCOUNT", "cc9")
    );
    assert_eq!((both[1].0.as_str(), both[1].1.as_str()), ("EMPLOYEE", "e1"));

    // The operator takes the card away; then QBO renames the employee.
    stack
        .mapping
        .clone()
        .delete_mapping(attrsync_proto::v1::DeleteMappingRequest {
            workspace_id,
            mapping_id: both[0].2,
        })
        .await
        .unwrap();
    qbo_side(&stack, workspace_id, vec![qbo_employee("Ada King")]).await;
    eventually(WAIT, "the rename applied", || async {
        Ok(mappings(&stack, workspace_id, "EMPLOYEE")
            .await
            .iter()
            .any(|m| m.destination_type == "EMPLOYEE" && m.destination_value == "Ada King")
            .then_some(()))
    })
    .await
    .unwrap();
    let after: Vec<(String, String)> = by_type()
        .await
        .into_iter()
        .map(|(t, id, _)| (t, id))
        .collect();
    assert_eq!(
        after,
        [("EMPLOYEE".to_owned(), "e1".to_owned())],
        "the removed card stays removed"
    );
    stack.stop().await;
}
