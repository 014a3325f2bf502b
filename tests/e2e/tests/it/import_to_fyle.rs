//! import-to-fyle over the whole running loop, without mapping's auto-mapping: QBO sandbox →
//! ingest (QBO webhooks) → qbo-sync → `sync.destination-attributes.v1` → import-to-fyle →
//! Fyle sandbox → fyle-sync. A QBO account becomes an enabled Fyle category within seconds
//! (the time is printed), a renamed customer disables the old project and creates the new
//! one, a deactivated vendor leaves Fyle's merchant options, a redelivered change posts
//! nothing, and a crashed run's lease expires so the next run proceeds.

use std::time::{Duration, Instant};

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::{TestStack, eventually, import::ImportHandle, qbo::QboSyncHandle};
use attrsync_kafka::topics;
use attrsync_proto::v1::{
    ChangeKind, ConnectFyleRequest, ConnectQboRequest, CreateWorkspaceRequest,
    DestinationAttributeChange, DestinationAttributesChanged, ExpenseAttribute,
    GetImportScheduleRequest, ImportSettings, ListExpenseAttributesRequest, ListImportLogsRequest,
    ListMappingsRequest, MappingSetting, SyncQboDimensionsRequest, TriggerImportRequest,
    UpdateImportSettingsRequest,
};
use attrsync_sandbox::{
    DEMO_ORG_ID, QboWebhookConfig, Sandbox, SandboxConfig, SandboxHandle, Seed, Side,
};
use serde_json::{Value, json};

pub(crate) const WAIT: Duration = Duration::from_secs(60);
pub(crate) const REALM: &str = "9130357766900456";

pub(crate) struct Loop {
    pub(crate) sb: SandboxHandle,
    pub(crate) stack: TestStack,
    pub(crate) qbo: QboSyncHandle,
    pub(crate) import: ImportHandle,
    pub(crate) workspace_id: i64,
}

/// How [`the_loop_with`] sets the loop up.
pub(crate) struct LoopSetup {
    /// Extra `IMPORT_TO_FYLE__…` settings.
    pub(crate) import_env: Vec<(String, String)>,
    /// Extra `QBO_SYNC__…` settings.
    pub(crate) qbo_env: Vec<(String, String)>,
    /// The workspace's import settings.
    pub(crate) import_settings: ImportSettings,
    /// Fyle's webhooks delivered to ingest (the subscription ConnectFyle registers reaches
    /// it) and fyle-sync reconciling every second or two, as in `fyle_reconcile`.
    pub(crate) fyle_webhooks: bool,
}

impl Default for LoopSetup {
    fn default() -> Self {
        Self {
            import_env: Vec::new(),
            qbo_env: Vec::new(),
            import_settings: ImportSettings {
                import_categories: true,
                import_projects: true,
                import_vendors_as_merchants: true,
                ..Default::default()
            },
            fyle_webhooks: false,
        }
    }
}

/// [`the_loop_with`] importing categories, projects and merchants, without Fyle webhooks.
async fn the_loop(import_env: Vec<(String, String)>) -> Loop {
    the_loop_with(LoopSetup {
        import_env,
        ..LoopSetup::default()
    })
    .await
}

/// The sandboxes, a stack with qbo-sync and import-to-fyle, and a workspace of the demo org
/// and realm connected to both with `setup`'s import settings, QBO webhooks delivered to
/// ingest, and a first QBO pull.
pub(crate) async fn the_loop_with(setup: LoopSetup) -> Loop {
    let sb = Sandbox::start(SandboxConfig {
        seed: Seed::Variety,
        workers: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let stack = if setup.fyle_webhooks {
        crate::fyle_reconcile::reconcile_stack(&sb, Vec::new()).await
    } else {
        TestStack::start_with_env(
            Vec::new(),
            vec![(
                "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
                sb.fyle_accounts_url().to_owned(),
            )],
        )
        .await
        .unwrap()
    };
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), setup.qbo_env)
        .await
        .unwrap();
    let import = stack.start_import_to_fyle(setup.import_env).await.unwrap();
    let workspace_id = stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: "Loop".into(),
            fyle_org_id: DEMO_ORG_ID.into(),
            qbo_realm_id: Some(REALM.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap()
        .id;
    stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(setup.import_settings),
            mapping_settings: Vec::new(),
        })
        .await
        .unwrap();
    let refresh_token = sb
        .credentials()
        .fyle
        .into_iter()
        .find(|c| c.org_id == DEMO_ORG_ID)
        .unwrap()
        .refresh_token;
    stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(refresh_token),
            authorization_code: None,
        })
        .await
        .unwrap();
    qbo.client
        .clone()
        .connect_qbo(ConnectQboRequest {
            workspace_id,
            realm_id: REALM.into(),
            authorization_code: None,
            refresh_token: sb.qbo().refresh_token(REALM),
        })
        .await
        .unwrap();
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", stack.ingest_url)),
        batch_window_ms: 50,
        ..QboWebhookConfig::default()
    });
    qbo.client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: Vec::new(),
            incremental: false,
        })
        .await
        .unwrap();
    Loop {
        sb,
        stack,
        qbo,
        import,
        workspace_id,
    }
}

impl Loop {
    /// Fyle's values of `attribute_type` as fyle-sync stores them.
    pub(crate) async fn fyle_values(&self, attribute_type: &str) -> Vec<ExpenseAttribute> {
        self.stack
            .fyle_sync
            .clone()
            .list_expense_attributes(ListExpenseAttributesRequest {
                workspace_id: self.workspace_id,
                attribute_type: Some(attribute_type.into()),
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .attributes
    }

    /// The enabled Fyle value of `attribute_type` named `value`, once fyle-sync stores it.
    pub(crate) async fn enabled_value(
        &self,
        attribute_type: &str,
        value: &str,
    ) -> ExpenseAttribute {
        eventually(
            WAIT,
            &format!("{value} as an enabled Fyle {attribute_type}"),
            || async {
                Ok(self
                    .fyle_values(attribute_type)
                    .await
                    .into_iter()
                    .find(|a| a.value == value && a.active))
            },
        )
        .await
        .unwrap()
    }

    /// Waits until import-to-fyle holds a QBO value of `attribute_type` (named `value`, when
    /// given): no QBO change of it is in flight any more.
    async fn wait_until_import_holds(&self, attribute_type: &str, value: Option<&str>) {
        eventually(WAIT, "import-to-fyle holding the QBO value", || async {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut db = AsyncPgConnection::establish(&self.stack.database.url).await?;
            let c: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM import_to_fyle.import_destination_attributes \
                 WHERE workspace_id = $1 AND attribute_type = $2 \
                   AND ($3::text IS NULL OR value = $3)",
            )
            .bind::<diesel::sql_types::BigInt, _>(self.workspace_id)
            .bind::<diesel::sql_types::Text, _>(attribute_type)
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(value)
            .get_result(&mut db)
            .await?;
            Ok((c.n > 0).then_some(()))
        })
        .await
        .unwrap();
    }

    /// The sandbox's object of `resource` by fyle-sync's `source_id`.
    pub(crate) fn in_fyle(&self, resource: &str, source_id: &str) -> Value {
        self.sb
            .fyle()
            .get(DEMO_ORG_ID, resource, source_id)
            .unwrap()
    }

    /// Imports `field` now (forced, waiting) until a run completes with values to look at: the
    /// initial import, once the settings and the first pull's values have arrived.
    pub(crate) async fn import_now(&self, field: &str) {
        eventually(WAIT, "an initial import", || async {
            let response = self
                .import
                .client
                .clone()
                .trigger_import(TriggerImportRequest {
                    custom_field: None,
                    workspace_id: self.workspace_id,
                    source_field: field.into(),
                    full: true,
                    wait: true,
                    force: true,
                })
                .await?
                .into_inner();
            Ok(response
                .log
                .filter(|l| l.status == "COMPLETE" && l.total_batches_count > 0)
                .map(drop))
        })
        .await
        .unwrap();
    }

    /// The CATEGORY → ACCOUNT mapping of the Fyle category `source_id`, once mapping has it.
    async fn mapping_of_category(&self, source_id: &str) -> attrsync_proto::v1::Mapping {
        self.mapping_of("CATEGORY", source_id, "ACCOUNT").await
    }

    /// The mapping of the Fyle value `source_type`/`source_id` to a `destination_type`, once
    /// mapping has it.
    pub(crate) async fn mapping_of(
        &self,
        source_type: &str,
        source_id: &str,
        destination_type: &str,
    ) -> attrsync_proto::v1::Mapping {
        eventually(
            WAIT,
            &format!("the {source_type} {source_id}'s {destination_type} mapping"),
            || async {
                Ok(self
                    .stack
                    .mapping
                    .clone()
                    .list_mappings(ListMappingsRequest {
                        workspace_id: self.workspace_id,
                        source_type: Some(source_type.into()),
                        source_id: Some(source_id.to_owned()),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .mappings
                    .into_iter()
                    .find(|m| m.destination_type == destination_type))
            },
        )
        .await
        .unwrap()
    }

    async fn merchant_options(&self) -> Vec<String> {
        let token = self.sb.fyle().access_token(DEMO_ORG_ID);
        let page: Value = self
            .stack
            .http
            .get(format!(
                "{}/platform/v1/admin/expense_fields",
                self.sb.fyle_url().trim_end_matches('/')
            ))
            .query(&[("column_name", "eq.merchant"), ("order", "updated_at.desc")])
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["data"][0]["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) async fn stop(self) {
        self.stack.stop().await;
        self.sb.stop().await;
    }
}

fn bulk_posts(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .count_where(Side::Fyle, |endpoint| endpoint.contains("/bulk"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qbo_account_becomes_an_enabled_fyle_category_within_seconds() {
    let l = the_loop(Vec::new()).await;
    l.import_now("CATEGORY").await;

    let started = Instant::now();
    let account =
        l.sb.qbo()
            .create(
                REALM,
                "Account",
                json!({"Name": "Drone Rentals", "AccountType": "Expense"}),
            )
            .unwrap();
    let category = l.enabled_value("CATEGORY", "Drone Rentals").await;
    let elapsed = started.elapsed();
    println!(
        "QBO account {} → enabled Fyle category {} stored by fyle-sync in {elapsed:?}",
        account["Id"], category.source_id
    );
    let in_fyle = l.in_fyle("categories", &category.source_id);
    assert_eq!(in_fyle["is_enabled"], true);
    assert_eq!(in_fyle["code"], account["Id"].as_str().unwrap());
    // Seconds, not a schedule (the incumbent's is 24 hours); generous for a busy machine.
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}");
    // And mapping maps the new category to its account, with no scheduled job either.
    let mapping = l.mapping_of_category(&category.source_id).await;
    assert_eq!(mapping.destination_id, account["Id"].as_str().unwrap());
    assert!(mapping.auto_mapped);
    println!(
        "... and mapped to the account {:?} after the change",
        started.elapsed()
    );

    // Redelivery (the same change published again) posts nothing and leaves the log alone.
    let logs = |l: &Loop| {
        let mut client = l.import.client.clone();
        let workspace_id = l.workspace_id;
        async move {
            client
                .list_import_logs(ListImportLogsRequest { workspace_id })
                .await
                .unwrap()
                .into_inner()
                .logs
        }
    };
    let before = logs(&l).await;
    let posts = bulk_posts(&l.sb);
    let change = DestinationAttributeChange {
        attribute_type: "ACCOUNT".into(),
        destination_id: account["Id"].as_str().unwrap().to_owned(),
        value: "Drone Rentals".into(),
        active: true,
        kind: ChangeKind::Created as i32,
        display_name: "Account".into(),
        detail_json: json!({"account_type": "Expense", "fully_qualified_name": "Drone Rentals",
                            "detail_type": account["AccountSubType"]})
        .to_string(),
        ..Default::default()
    };
    l.stack
        .publish_directly(
            topics::DESTINATION_ATTRIBUTES_CHANGED,
            l.workspace_id,
            DestinationAttributesChanged {
                changes: vec![change],
                origin: "webhook".into(),
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bulk_posts(&l.sb),
        posts,
        "a redelivered change posts nothing"
    );
    let after = logs(&l).await;
    let category_log = |logs: &[attrsync_proto::v1::ImportLog]| {
        logs.iter()
            .find(|g| g.attribute_type == "CATEGORY")
            .cloned()
            .unwrap()
    };
    assert_eq!(category_log(&after).status, "COMPLETE");
    assert_eq!(
        category_log(&after).values_posted,
        category_log(&before).values_posted
    );
    l.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_customer_and_a_deactivated_vendor_follow_into_fyle() {
    let l = the_loop(Vec::new()).await;
    l.import_now("PROJECT").await;
    l.import_now("MERCHANT").await;
    let customer = l.sb.qbo().get(REALM, "Customer", "7").unwrap();
    let old_name = customer["FullyQualifiedName"]
        .as_str()
        .or(customer["DisplayName"].as_str())
        .unwrap()
        .to_owned();
    let old = eventually(WAIT, "the customer as a Fyle project", || async {
        Ok(l.fyle_values("PROJECT")
            .await
            .into_iter()
            .find(|a| a.value == old_name && a.active))
    })
    .await
    .unwrap();
    let vendor = l.sb.qbo().get(REALM, "Vendor", "30").unwrap();
    let vendor_name = vendor["DisplayName"].as_str().unwrap().to_owned();
    assert!(l.merchant_options().await.contains(&vendor_name));

    l.sb.qbo()
        .rename(REALM, "Customer", "7", "Renamed Customer Seven")
        .unwrap();
    l.sb.qbo().set_active(REALM, "Vendor", "30", false).unwrap();

    let new = eventually(
        WAIT,
        "the renamed customer as a new Fyle project",
        || async {
            Ok(l.fyle_values("PROJECT")
                .await
                .into_iter()
                .find(|a| a.value.contains("Renamed Customer Seven") && a.active))
        },
    )
    .await
    .unwrap();
    assert_ne!(new.source_id, old.source_id);
    // The mapping follows: the new project maps to the renamed customer.
    let mapping = l.mapping_of("PROJECT", &new.source_id, "CUSTOMER").await;
    assert_eq!(mapping.destination_id, "7");
    assert!(mapping.auto_mapped);
    eventually(WAIT, "the old project disabled in Fyle", || async {
        Ok((l.in_fyle("projects", &old.source_id)["is_enabled"] == false).then_some(()))
    })
    .await
    .unwrap();
    eventually(
        WAIT,
        "the vendor gone from Fyle's merchant options",
        || async { Ok((!l.merchant_options().await.contains(&vendor_name)).then_some(())) },
    )
    .await
    .unwrap();
    l.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_runs_lease_expires_and_the_next_run_proceeds() {
    let l = the_loop(Vec::new()).await;
    l.import_now("CATEGORY").await;
    // A run that crashed: its lease held by a holder that is gone, its log left IN_PROGRESS.
    let mut conn = AsyncPgConnection::establish(&l.stack.database.url)
        .await
        .unwrap();
    let lease = format!("import:{}:CATEGORY", l.workspace_id);
    let started = Instant::now();
    diesel::sql_query(format!(
        "INSERT INTO import_to_fyle.leases (name, holder, expires_at) \
         VALUES ('{lease}', 'crashed-replica', now() + interval '4 seconds')"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query(format!(
        "UPDATE import_to_fyle.import_logs SET status = 'IN_PROGRESS' \
         WHERE workspace_id = {} AND attribute_type = 'CATEGORY'",
        l.workspace_id
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let response = l
        .import
        .client
        .clone()
        .trigger_import(TriggerImportRequest {
            custom_field: None,
            workspace_id: l.workspace_id,
            source_field: "CATEGORY".into(),
            full: false,
            wait: true,
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    let log = response.log.unwrap();
    assert_eq!(log.status, "COMPLETE", "{log:?}");
    assert!(log.last_successful_run_at.is_some());
    assert_eq!(log.total_batches_count, log.processed_batches_count);
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the run waited for the crashed lease to expire"
    );
    // Fyle has the QBO expense accounts as categories.
    let categories = l.fyle_values("CATEGORY").await;
    let account = l.sb.qbo().get(REALM, "Account", "7").unwrap();
    if account["AccountType"] == "Expense" && account["Active"] == true {
        let name = account["FullyQualifiedName"].as_str().unwrap();
        assert!(
            categories
                .iter()
                .any(|c| c.value.eq_ignore_ascii_case(name))
        );
    }
    l.stop().await;
}

/// The whole settings path: once import-to-fyle holds QBO's classes (and no QBO change is
/// left in flight), mapping's `UpdateImportSettings` stores a COST_CENTER → CLASS setting that
/// imports, and its `ImportRequested` command alone makes import-to-fyle import the classes as
/// Fyle cost centers — no schedule, no forced trigger; a class created in QBO afterwards
/// follows by webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_center_mapping_setting_imports_qbo_classes_as_fyle_cost_centers() {
    let l = the_loop(Vec::new()).await;
    let workspace_id = l.workspace_id;
    l.wait_until_import_holds("CLASS", Some("Adidas")).await;
    assert!(
        !l.fyle_values("COST_CENTER")
            .await
            .iter()
            .any(|a| a.value == "Adidas"),
        "not imported before the setting"
    );
    l.stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(ImportSettings {
                import_categories: true,
                import_projects: true,
                import_vendors_as_merchants: true,
                ..Default::default()
            }),
            mapping_settings: vec![MappingSetting {
                source_field: "COST_CENTER".into(),
                destination_field: "CLASS".into(),
                import_to_fyle: true,
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    l.enabled_value("COST_CENTER", "Adidas").await;
    l.sb.qbo()
        .create(REALM, "Class", json!({"Name": "Northwind Ops"}))
        .unwrap();
    l.enabled_value("COST_CENTER", "Northwind Ops").await;
    l.stop().await;
}

/// #59 end to end: items turned on import QBO's item as a Fyle category, which mapping maps
/// to the item; turned off, mapping deletes that mapping and its `disable_items` command,
/// carrying the category's Fyle id, makes import-to-fyle disable it in Fyle. Categories from
/// accounts stay enabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_items_off_disables_the_fyle_categories_mapped_to_qbo_items() {
    let l = the_loop(Vec::new()).await;
    let workspace_id = l.workspace_id;
    let settings = |import_items| UpdateImportSettingsRequest {
        workspace_id,
        import_settings: Some(ImportSettings {
            import_categories: true,
            import_items,
            import_projects: true,
            import_vendors_as_merchants: true,
            ..Default::default()
        }),
        mapping_settings: Vec::new(),
    };
    l.stack
        .mapping
        .clone()
        .update_import_settings(settings(true))
        .await
        .unwrap();
    // qbo-sync stores items only while they are imported: it pulls them when items turn on.
    let category = l.enabled_value("CATEGORY", "Concrete").await;
    eventually(WAIT, "the category mapped to the item", || async {
        let mappings = l
            .stack
            .mapping
            .clone()
            .list_mappings(ListMappingsRequest {
                workspace_id,
                source_type: Some("CATEGORY".into()),
                source_id: Some(category.source_id.clone()),
                ..Default::default()
            })
            .await?
            .into_inner()
            .mappings;
        Ok(mappings
            .into_iter()
            .find(|m| m.destination_display_name == "Item"))
    })
    .await
    .unwrap();
    // Every category enabled in Fyle now (the sandbox's own state).
    let enabled: Vec<String> = l
        .fyle_values("CATEGORY")
        .await
        .into_iter()
        .map(|a| a.source_id)
        .filter(|id| l.in_fyle("categories", id)["is_enabled"] == true)
        .collect();

    l.stack
        .mapping
        .clone()
        .update_import_settings(settings(false))
        .await
        .unwrap();
    // The command names the categories whose item mappings went (the seed has more items
    // than Concrete); exactly those are disabled.
    let decode = |payload: &[u8]| match attrsync_kafka::envelope::decode(payload).ok()?.payload {
        Some(attrsync_proto::Payload::ImportRequested(c)) if c.reason == "disable_items" => {
            Some(c.disable_source_ids)
        }
        _ => None,
    };
    let raws =
        crate::kafka_reader::read_until(&l.stack.topic(topics::IMPORT_COMMANDS), WAIT, |seen| {
            seen.iter().any(|r| decode(&r.payload).is_some())
        })
        .await
        .unwrap();
    let item_mapped = raws.iter().find_map(|r| decode(&r.payload)).unwrap();
    assert!(item_mapped.contains(&category.source_id));
    eventually(
        WAIT,
        "the item-mapped categories disabled in Fyle",
        || async {
            Ok(item_mapped
                .iter()
                .all(|id| l.in_fyle("categories", id)["is_enabled"] == false)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let others: Vec<&String> = enabled
        .iter()
        .filter(|id| !item_mapped.contains(id))
        .collect();
    assert!(!others.is_empty());
    for id in others {
        let category = l.in_fyle("categories", id);
        assert_eq!(
            category["is_enabled"], true,
            "category {category} was not mapped to an item and stays enabled"
        );
    }
    l.stop().await;
}

/// The expense field of `field_name` in the sandbox's demo org.
fn expense_field(sb: &SandboxHandle, field_name: &str) -> Option<Value> {
    sb.fyle()
        .ids(DEMO_ORG_ID, "expense_fields")
        .into_iter()
        .filter_map(|id| sb.fyle().get(DEMO_ORG_ID, "expense_fields", &id))
        .find(|f| f["field_name"] == field_name)
}

/// #50 and #64: a custom mapping setting that imports is imported before it is saved — QBO's
/// departments become the options of a new Fyle SELECT field "Work Site" — and one Fyle refuses
/// (its label is a Fyle field already) fails the settings change with Fyle's message, saving
/// nothing. Once saved, a department created in QBO becomes an option in real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_mapping_setting_is_imported_before_saving_and_one_fyle_refuses_is_not_saved() {
    let l = the_loop(Vec::new()).await;
    let workspace_id = l.workspace_id;
    l.wait_until_import_holds("DEPARTMENT", None).await;
    let import = ImportSettings {
        import_categories: true,
        import_projects: true,
        import_vendors_as_merchants: true,
        ..Default::default()
    };
    let work_site = MappingSetting {
        source_field: "Work Site".into(),
        destination_field: "DEPARTMENT".into(),
        import_to_fyle: true,
        ..Default::default()
    };
    let update = |mapping_settings: Vec<MappingSetting>| UpdateImportSettingsRequest {
        workspace_id,
        import_settings: Some(import.clone()),
        mapping_settings,
    };
    assert!(expense_field(&l.sb, "Work Site").is_none());
    let saved = l
        .stack
        .mapping
        .clone()
        .update_import_settings(update(vec![work_site.clone()]))
        .await
        .unwrap()
        .into_inner();
    // Imported in the call, before it returned.
    let field = expense_field(&l.sb, "Work Site").expect("the Work Site field in Fyle");
    assert_eq!(field["type"], "SELECT");
    assert_eq!(field["is_custom"], true);
    assert_eq!(field["placeholder"], "Select Work Site");
    assert!(
        field["options"]
            .as_array()
            .unwrap()
            .contains(&json!("Marketing Department")),
        "{field}"
    );

    // Saved, it follows QBO in real time: a new department becomes an option.
    l.sb.qbo()
        .create(REALM, "Department", json!({"Name": "Field Ops"}))
        .unwrap();
    eventually(
        WAIT,
        "the new department as an option of Work Site",
        || async {
            Ok(expense_field(&l.sb, "Work Site")
                .filter(|f| {
                    f["options"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("Field Ops"))
                })
                .map(drop))
        },
    )
    .await
    .unwrap();

    // A Fyle admin has a (system) field called Purpose: Fyle refuses a custom field of that
    // name, and the settings change fails with Fyle's message.
    l.sb.fyle()
        .create(
            DEMO_ORG_ID,
            "expense_fields",
            json!({"field_name": "Purpose", "type": "TEXT", "is_mandatory": false,
                   "is_enabled": true, "is_custom": false}),
        )
        .unwrap();
    let purpose = MappingSetting {
        source_field: "PURPOSE".into(),
        destination_field: "CLASS".into(),
        import_to_fyle: true,
        ..Default::default()
    };
    let refused = l
        .stack
        .mapping
        .clone()
        .update_import_settings(update(vec![work_site, purpose]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let error: Value = serde_json::from_str(refused.message()).unwrap();
    assert_eq!(error["field_name"], "PURPOSE");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{error}"
    );
    let after = l
        .stack
        .mapping
        .clone()
        .get_workspace(attrsync_proto::v1::GetWorkspaceRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.version, saved.version, "nothing saved");
    assert!(
        !after
            .settings
            .unwrap()
            .mapping_settings
            .iter()
            .any(|m| m.source_field == "PURPOSE")
    );
    l.stop().await;
}

/// #61: a workspace that imports has a schedule whose rounds request its fields with nothing
/// else happening — here every 2 s, with the 30-minute rule at zero, so the CATEGORY run keeps
/// starting again — and a workspace whose settings import nothing has no schedule and no more
/// rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_import_schedule_runs_every_interval_while_the_settings_import_and_stops_after() {
    let l = the_loop(vec![
        ("IMPORT_TO_FYLE__SCHEDULE__INTERVAL".into(), "2s".into()),
        ("IMPORT_TO_FYLE__SCHEDULE__SCAN".into(), "200ms".into()),
        ("IMPORT_TO_FYLE__RUNS__MIN_INTERVAL".into(), "0s".into()),
    ])
    .await;
    let workspace_id = l.workspace_id;
    let schedule = || async {
        l.import
            .client
            .clone()
            .get_import_schedule(GetImportScheduleRequest { workspace_id })
            .await
            .map(tonic::Response::into_inner)
    };
    let found = eventually(WAIT, "the workspace's schedule", || async {
        Ok(schedule().await.ok())
    })
    .await
    .unwrap();
    assert_eq!(found.interval_seconds, 2);
    assert_eq!(found.source_fields, ["CATEGORY", "MERCHANT", "PROJECT"]);

    let category_started = || async {
        l.import
            .client
            .clone()
            .list_import_logs(ListImportLogsRequest { workspace_id })
            .await
            .unwrap()
            .into_inner()
            .logs
            .into_iter()
            .find(|log| log.attribute_type == "CATEGORY")
            .and_then(|log| log.started_at)
            .map(|t| t.seconds * 1_000 + i64::from(t.nanos) / 1_000_000)
    };
    // Three runs at least an interval apart, with no QBO change and no command.
    let mut starts = vec![
        eventually(WAIT, "a category run", || async {
            Ok(category_started().await)
        })
        .await
        .unwrap(),
    ];
    while starts.len() < 3 {
        let last = *starts.last().unwrap();
        let next = eventually(WAIT, "the next scheduled run", || async {
            Ok(category_started().await.filter(|t| *t >= last + 1_500))
        })
        .await
        .unwrap();
        starts.push(next);
    }

    // Nothing imported any more: the schedule goes, and so do its rounds.
    l.stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(ImportSettings::default()),
            mapping_settings: Vec::new(),
        })
        .await
        .unwrap();
    eventually(WAIT, "no schedule", || async {
        Ok(schedule()
            .await
            .err()
            .filter(|e| e.code() == tonic::Code::NotFound)
            .map(drop))
    })
    .await
    .unwrap();
    // Three intervals later it is still gone: the scheduler's reconcile, which runs every
    // 200 ms here, does not bring it back for a workspace that imports nothing.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        schedule().await.unwrap_err().code(),
        tonic::Code::NotFound,
        "no schedule for a workspace that imports nothing"
    );
    l.stop().await;
}

/// Loop scenario 6: widening the chart of accounts makes an "Other Expense" account QBO already
/// had an enabled Fyle category, mapped to its account, with no schedule and no refresh —
/// qbo-sync, which stores only the chart's accounts, pulls accounts again when the chart
/// changes, and the settings change's command runs a full category import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widening_the_chart_of_accounts_imports_and_maps_the_accounts_it_adds() {
    let l = the_loop(Vec::new()).await;
    l.import_now("CATEGORY").await;
    let account =
        l.sb.qbo()
            .create(
                REALM,
                "Account",
                json!({"Name": "Freight Surcharges", "AccountType": "Other Expense"}),
            )
            .unwrap();
    let started = Instant::now();
    l.stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id: l.workspace_id,
            import_settings: Some(ImportSettings {
                import_categories: true,
                import_projects: true,
                import_vendors_as_merchants: true,
                charts_of_accounts: vec!["Expense".into(), "Other Expense".into()],
                ..Default::default()
            }),
            mapping_settings: Vec::new(),
        })
        .await
        .unwrap();
    let category = l.enabled_value("CATEGORY", "Freight Surcharges").await;
    let mapping = l.mapping_of_category(&category.source_id).await;
    assert_eq!(mapping.destination_id, account["Id"].as_str().unwrap());
    println!(
        "chart widened → Fyle category and mapping in {:?}",
        started.elapsed()
    );
    l.stop().await;
}

/// A command can overtake its snapshot (two topics): a run asked for on settings the
/// projection does not have yet waits — retried, not run on the old settings — and runs once
/// the snapshot arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_overtakes_its_settings_waits_for_them() {
    let l = the_loop(Vec::new()).await;
    l.import_now("CATEGORY").await;
    let started = || async {
        l.import
            .client
            .clone()
            .list_import_logs(ListImportLogsRequest {
                workspace_id: l.workspace_id,
            })
            .await
            .unwrap()
            .into_inner()
            .logs
            .into_iter()
            .find(|log| log.attribute_type == "CATEGORY")
            .and_then(|log| log.started_at)
    };
    let before = started().await;
    let mut snapshot = l
        .stack
        .mapping
        .clone()
        .get_workspace(attrsync_proto::v1::GetWorkspaceRequest {
            workspace_id: l.workspace_id,
        })
        .await
        .unwrap()
        .into_inner();
    snapshot.version += 10;
    l.stack
        .publish_directly(
            topics::IMPORT_COMMANDS,
            l.workspace_id,
            attrsync_proto::v1::ImportRequested {
                source_field: "CATEGORY".into(),
                reason: "settings_changed".into(),
                full: true,
                settings_version: snapshot.version,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The runner tried and deferred it (attempts counted), and ran nothing.
    eventually(WAIT, "the request deferred", || async {
        #[derive(diesel::QueryableByName)]
        struct Attempts {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            attempts: i32,
        }
        let mut db = AsyncPgConnection::establish(&l.stack.database.url).await?;
        let row: Option<Attempts> = diesel::OptionalExtension::optional(
            diesel::sql_query(
                "SELECT attempts FROM import_to_fyle.import_requests \
             WHERE workspace_id = $1 AND source_field = 'CATEGORY'",
            )
            .bind::<diesel::sql_types::BigInt, _>(l.workspace_id)
            .get_result(&mut db)
            .await,
        )?;
        Ok(row.filter(|r| r.attempts >= 2).map(drop))
    })
    .await
    .unwrap();
    assert_eq!(
        started().await,
        before,
        "no run on the settings before the change"
    );

    l.stack
        .publish_directly(topics::WORKSPACE_SETTINGS, l.workspace_id, snapshot)
        .await
        .unwrap();
    eventually(WAIT, "the run once the settings arrived", || async {
        Ok((started().await != before).then_some(()))
    })
    .await
    .unwrap();
    l.stop().await;
}
