//! Unit tests of the realm write rules.

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn create_then_sparse_update_with_sync_token() {
    let mut r = Realm::new("1", -420);
    let (c, ev) = r
        .create(
            EntityType::Customer,
            &obj(json!({"DisplayName": "Blue Harbor"})),
            1000,
        )
        .expect("create");
    assert_eq!(ev.kind, EventKind::Create);
    assert_eq!(c["SyncToken"], "0");
    assert_eq!(c["FullyQualifiedName"], "Blue Harbor");
    let id = c["Id"].as_str().expect("id").to_owned();
    let stale = r.update(
        EntityType::Customer,
        &obj(json!({"Id": id, "SyncToken": "7", "sparse": true, "Active": false})),
        2000,
    );
    assert_eq!(stale.err(), Some(WriteError::Stale));
    let (d, ev) = r
        .update(
            EntityType::Customer,
            &obj(json!({"Id": id, "SyncToken": "0", "sparse": true, "Active": false})),
            2000,
        )
        .expect("deactivate");
    assert_eq!(ev.kind, EventKind::Deactivate);
    assert_eq!(d["DisplayName"], "Blue Harbor (deleted)");
    assert_eq!(d["SyncToken"], "1");
    assert_eq!(d["MetaData"]["CreateTime"], format_time(1000, r.tz));
    // the name is free again for an active customer
    r.create(
        EntityType::Customer,
        &obj(json!({"DisplayName": "Blue Harbor"})),
        3000,
    )
    .expect("name reusable");
}

#[test]
fn parties_share_a_namespace() {
    let mut r = Realm::new("1", 0);
    r.create(
        EntityType::Vendor,
        &obj(json!({"DisplayName": "Books by Bessie"})),
        1,
    )
    .expect("vendor");
    let dup = r.create(
        EntityType::Customer,
        &obj(json!({"DisplayName": "books by bessie"})),
        2,
    );
    assert_eq!(
        dup.err(),
        Some(WriteError::Duplicate(
            EntityType::Customer,
            "books by bessie".into()
        ))
    );
    r.create(
        EntityType::Account,
        &obj(json!({"Name": "Books by Bessie"})),
        3,
    )
    .expect("accounts are separate");
}

#[test]
fn children_are_qualified_and_follow_parent_renames() {
    let mut r = Realm::new("1", 0);
    let (p, _) = r
        .create(
            EntityType::Customer,
            &obj(json!({"DisplayName": "Freeman"})),
            1,
        )
        .expect("parent");
    let pid = p["Id"].as_str().expect("id").to_owned();
    let (c, _) = r
        .create(
            EntityType::Customer,
            &obj(json!({"DisplayName": "Ocean View", "ParentRef": {"value": pid}})),
            2,
        )
        .expect("child");
    assert_eq!(c["FullyQualifiedName"], "Freeman:Ocean View");
    assert_eq!(c["Job"], true);
    assert_eq!(c["Level"], 1);
    r.patch(
        EntityType::Customer,
        pid.parse().expect("numeric"),
        &obj(json!({"DisplayName": "Freeman Sports"})),
        3,
    )
    .expect("rename");
    let cid: u64 = c["Id"].as_str().expect("id").parse().expect("numeric");
    assert_eq!(
        r.table(EntityType::Customer).get(cid).expect("child").json["FullyQualifiedName"],
        "Freeman Sports:Ocean View"
    );
}

#[test]
fn missing_name_is_required_param() {
    let mut r = Realm::new("1", 0);
    assert_eq!(
        r.create(EntityType::Class, &obj(json!({})), 1).err(),
        Some(WriteError::Required("Name"))
    );
}
