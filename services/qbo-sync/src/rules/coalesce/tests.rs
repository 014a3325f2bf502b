use chrono::{Duration, TimeZone};

use super::*;

const REALM: &str = "9130357766900456";

fn at(minute: i64) -> Option<DateTime<Utc>> {
    Utc.with_ymd_and_hms(2024, 5, 2, 10, 0, 0)
        .single()
        .map(|t| t + Duration::minutes(minute))
}

fn change(entity: &str, id: &str, operation: &str, minute: i64) -> EntityChange {
    EntityChange {
        realm_id: REALM.into(),
        entity: entity.into(),
        entity_id: id.into(),
        operation: Operation::from_legacy(operation),
        deleted_id: None,
        last_updated: at(minute),
    }
}

fn merge(entity: &str, surviving: &str, merged_away: &str, minute: i64) -> EntityChange {
    EntityChange {
        deleted_id: Some(merged_away.into()),
        ..change(entity, surviving, "Merge", minute)
    }
}

fn plan_of(changes: &[EntityChange]) -> FetchPlan {
    let mut plans = coalesce(changes, &ChunkLimits::default());
    assert_eq!(plans.len(), 1, "one realm");
    plans.remove(0)
}

fn fetched(plan: &FetchPlan, entity: SyncEntity) -> Vec<String> {
    plan.entities
        .get(&entity)
        .map(|p| p.fetch_ids().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn deactivated(plan: &FetchPlan, entity: SyncEntity) -> Vec<String> {
    plan.entities
        .get(&entity)
        .map(|p| p.deactivate.iter().map(|d| d.id.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn operations_parse_from_legacy_names() {
    assert_eq!(Operation::from_legacy("Update"), Operation::Update);
    assert_eq!(Operation::from_legacy("delete"), Operation::Delete);
    assert_eq!(
        Operation::from_legacy("Archive"),
        Operation::Other("Archive".into())
    );
}

#[test]
fn repeated_changes_to_one_entity_are_fetched_once() {
    let plan = plan_of(&[
        change("Customer", "58", "Create", 0),
        change("Customer", "58", "Update", 1),
        change("Customer", "58", "Update", 2),
        change("Customer", "9", "Update", 3),
    ]);
    assert_eq!(fetched(&plan, SyncEntity::Customer), ["9", "58"]);
    assert_eq!(plan.fetch_statements(), 1);
}

#[test]
fn each_synced_entity_gets_its_own_plan() {
    let plan = plan_of(&[
        change("Account", "7", "Update", 0),
        change("Item", "7", "Update", 0),
        change("Vendor", "30", "Create", 0),
        change("Class", "5000000000000085682", "Update", 0),
        change("Department", "2", "Update", 0),
        change("Employee", "63", "Update", 0),
        change("customer", "58", "Update", 0),
    ]);
    let entities: Vec<SyncEntity> = plan.entities.keys().copied().collect();
    assert_eq!(
        entities,
        [
            SyncEntity::Account,
            SyncEntity::Item,
            SyncEntity::Vendor,
            SyncEntity::Customer,
            SyncEntity::Class,
            SyncEntity::Department,
            SyncEntity::Employee
        ]
    );
    assert_eq!(fetched(&plan, SyncEntity::Item), ["7"]);
    assert_eq!(plan.ignored, 0);
}

#[test]
fn entities_we_do_not_sync_are_counted_and_ignored() {
    let plan = plan_of(&[
        change("Bill", "1", "Create", 0),
        change("Invoice", "2", "Emailed", 0),
        change("Invoice", "3", "Void", 0),
        change("TaxCode", "4", "Update", 0),
        change("Vendor", "", "Update", 0),
        change("Vendor", "30", "Update", 0),
    ]);
    assert_eq!(plan.ignored, 5);
    assert_eq!(
        plan.ignored_by_entity,
        BTreeMap::from([
            ("Bill".to_owned(), 1),
            ("Invoice".to_owned(), 2),
            ("TaxCode".to_owned(), 1),
            ("Vendor".to_owned(), 1),
        ])
    );
    assert_eq!(plan.entities.len(), 1);
    assert_eq!(fetched(&plan, SyncEntity::Vendor), ["30"]);
}

#[test]
fn a_delete_deactivates_without_a_read() {
    let plan = plan_of(&[change("Vendor", "30", "Delete", 5)]);
    assert!(fetched(&plan, SyncEntity::Vendor).is_empty());
    assert_eq!(
        plan.entities[&SyncEntity::Vendor].deactivate,
        [Deactivation {
            id: "30".into(),
            as_of: at(5)
        }]
    );
    assert_eq!(plan.fetch_statements(), 0);
}

#[test]
fn an_update_after_a_delete_is_fetched_not_deactivated() {
    let plan = plan_of(&[
        change("Vendor", "30", "Delete", 0),
        change("Vendor", "30", "Update", 1),
    ]);
    assert_eq!(fetched(&plan, SyncEntity::Vendor), ["30"]);
    assert!(deactivated(&plan, SyncEntity::Vendor).is_empty());
}

#[test]
fn a_delete_after_an_update_is_fetched_too() {
    let plan = plan_of(&[
        change("Vendor", "30", "Update", 0),
        change("Vendor", "30", "Delete", 1),
    ]);
    assert_eq!(fetched(&plan, SyncEntity::Vendor), ["30"]);
    assert!(deactivated(&plan, SyncEntity::Vendor).is_empty());
}

#[test]
fn the_plan_does_not_depend_on_the_order_of_the_batch() {
    let batch = vec![
        change("Vendor", "30", "Delete", 0),
        change("Vendor", "30", "Update", 1),
        change("Vendor", "31", "Delete", 2),
        change("Vendor", "31", "Delete", 7),
        merge("Vendor", "40", "41", 3),
        change("Customer", "58", "Update", 4),
        change("Bill", "1", "Create", 5),
    ];
    let forward = plan_of(&batch);
    let mut reversed = batch.clone();
    reversed.reverse();
    assert_eq!(plan_of(&reversed), forward);
    let mut rotated = batch;
    rotated.rotate_left(3);
    assert_eq!(plan_of(&rotated), forward);
    assert_eq!(
        forward.entities[&SyncEntity::Vendor].deactivate,
        [
            Deactivation {
                id: "31".into(),
                as_of: at(7)
            },
            Deactivation {
                id: "41".into(),
                as_of: at(3)
            }
        ],
        "the newest time of repeated deletes"
    );
}

#[test]
fn a_merge_fetches_the_survivor_and_deactivates_the_merged_away() {
    let plan = plan_of(&[
        merge("Customer", "58", "59", 0),
        merge("Customer", "58", "59", 2),
    ]);
    let customers = &plan.entities[&SyncEntity::Customer];
    assert_eq!(fetched(&plan, SyncEntity::Customer), ["58"]);
    assert_eq!(deactivated(&plan, SyncEntity::Customer), ["59"]);
    assert_eq!(
        customers.merges,
        [Merge {
            surviving_id: "58".into(),
            merged_away_id: "59".into(),
            as_of: at(2)
        }],
        "recorded once"
    );
}

#[test]
fn a_merged_away_id_that_is_also_updated_is_fetched() {
    let plan = plan_of(&[
        merge("Vendor", "40", "41", 0),
        change("Vendor", "41", "Update", 1),
    ]);
    assert_eq!(fetched(&plan, SyncEntity::Vendor), ["40", "41"]);
    assert!(deactivated(&plan, SyncEntity::Vendor).is_empty());
    assert_eq!(
        plan.entities[&SyncEntity::Vendor].merges.len(),
        1,
        "the merge is still recorded"
    );
}

#[test]
fn a_merge_without_a_deleted_id_only_fetches_the_survivor() {
    let plan = plan_of(&[change("Vendor", "40", "Merge", 0)]);
    assert_eq!(fetched(&plan, SyncEntity::Vendor), ["40"]);
    assert!(deactivated(&plan, SyncEntity::Vendor).is_empty());
    assert!(plan.entities[&SyncEntity::Vendor].merges.is_empty());
    let plan = plan_of(&[merge("Vendor", "40", "40", 0)]);
    assert!(
        deactivated(&plan, SyncEntity::Vendor).is_empty(),
        "never deactivate the survivor"
    );
}

#[test]
fn realms_get_separate_plans_in_realm_order() {
    let mut other = change("Vendor", "30", "Update", 0);
    other.realm_id = "1185883450".into();
    let plans = coalesce(
        &[change("Vendor", "30", "Update", 0), other],
        &ChunkLimits::default(),
    );
    let realms: Vec<&str> = plans.iter().map(|p| p.realm_id.as_str()).collect();
    assert_eq!(realms, ["1185883450", REALM]);
    assert!(
        plans
            .iter()
            .all(|p| fetched(p, SyncEntity::Vendor) == ["30"])
    );
}

#[test]
fn a_burst_of_a_thousand_changes_costs_a_few_statements() {
    let batch: Vec<EntityChange> = (1..=1000)
        .map(|n| change("Customer", &n.to_string(), "Update", n % 60))
        .collect();
    let plan = plan_of(&batch);
    let chunks = &plan.entities[&SyncEntity::Customer].fetch;
    let limits = ChunkLimits::default();
    for chunk in chunks {
        let chars: usize = chunk.iter().map(|id| id.len() + 3).sum();
        assert!(chunk.len() <= limits.max_ids);
        assert!(chars <= limits.max_list_chars, "{chars} characters");
    }
    // 5,893 characters of `'id',` in all: three statements of at most 2,000.
    assert_eq!(plan.fetch_statements(), 3);
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 1000);
    assert_eq!(chunks[0][..3], ["1", "2", "3"], "numeric order");
}

#[test]
fn chunks_respect_the_id_count_and_the_statement_length() {
    let ids: Vec<String> = (1..=25).map(|n| format!("{n:03}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let by_count = chunk_ids(
        &ids,
        &ChunkLimits {
            max_ids: 10,
            max_list_chars: 10_000,
        },
    );
    assert_eq!(
        by_count.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 5]
    );
    let by_length = chunk_ids(
        &ids,
        &ChunkLimits {
            max_ids: 1000,
            max_list_chars: 30,
        },
    );
    assert_eq!(
        by_length.iter().map(Vec::len).collect::<Vec<_>>(),
        [5, 5, 5, 5, 5],
        "six characters per id"
    );
    let huge = "9".repeat(50);
    let alone = chunk_ids(
        &[huge.as_str(), "1"],
        &ChunkLimits {
            max_ids: 1000,
            max_list_chars: 30,
        },
    );
    assert_eq!(alone.len(), 2, "an over-long id travels alone");
}

#[test]
fn ids_sort_as_numbers() {
    let mut ids = vec!["10", "9", "x", "100", "09", "2"];
    ids.sort_by(|a, b| id_order(a, b));
    assert_eq!(ids, ["2", "09", "9", "10", "100", "x"]);
}
