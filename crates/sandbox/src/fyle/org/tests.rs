//! Unit tests of the org write rules and stamps.

use super::*;

fn org() -> FyleOrg {
    FyleOrg::new(OrgProfile {
        org_id: "orTest".into(),
        name: "Test".into(),
        currency: "USD".into(),
        domain: "example.com".into(),
        admin: json!({}),
    })
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn bulk_is_all_or_nothing() {
    let mut o = org();
    let items = vec![
        json!({"name": "A"}),
        json!({"name": "B"}),
        json!({"code": "x"}),
    ];
    let err = o
        .bulk(Resource::Categories, &items, 1, Mode::Api, None)
        .expect_err("row 2 lacks a name");
    match err {
        WriteError::Bulk(rows) => {
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].row, 2);
        }
        other => panic!("expected BulkError, got {other:?}"),
    }
    assert!(
        o.collection(Resource::Categories).is_empty(),
        "rows 0 and 1 rolled back"
    );
}

#[test]
fn duplicate_names_are_integrity_errors_and_updates_keep_their_own_name() {
    let mut o = org();
    let (a, _) = o
        .upsert(
            Resource::Categories,
            &obj(json!({"name": "A"})),
            1,
            Mode::Api,
        )
        .expect("create");
    let dup = o.upsert(
        Resource::Categories,
        &obj(json!({"name": "A"})),
        2,
        Mode::Api,
    );
    assert!(matches!(dup, Err(WriteError::Integrity(_))));
    let upd = obj(json!({"id": a["id"].clone(), "name": "A", "is_enabled": false}));
    let (b, change) = o
        .upsert(Resource::Categories, &upd, 3, Mode::Api)
        .expect("update in place");
    assert_eq!(change.action, Action::Updated);
    assert_eq!(b["is_enabled"], false);
    assert!(b["updated_at"].as_str() > a["updated_at"].as_str());
}

#[test]
fn stamps_never_go_back_and_may_tie() {
    let mut o = org();
    assert_eq!(o.stamp(100), 100);
    assert_eq!(o.stamp(100), 100, "same instant, same stamp");
    assert_eq!(
        o.stamp(50),
        100,
        "a clock behind the last stamp does not move it back"
    );
    o.mess.updated_at_resolution = TimestampResolution::Seconds;
    assert_eq!(o.stamp(3_700_001), 3_000_000);
    assert_eq!(o.stamp(3_999_999), 3_000_000, "same second ties");
}

#[test]
fn a_bulk_post_shares_one_stamp_unless_configured_otherwise() {
    let mut o = org();
    let items = vec![json!({"name": "A"}), json!({"name": "B"})];
    let changes = o
        .bulk(Resource::Categories, &items, 7, Mode::Api, None)
        .expect("bulk");
    assert_eq!(changes[0].data["updated_at"], changes[1].data["updated_at"]);
    o.mess.bulk_shared_updated_at = false;
    let items = vec![json!({"name": "C"}), json!({"name": "D"})];
    let changes = o
        .bulk(Resource::Categories, &items, 7, Mode::Api, None)
        .expect("bulk");
    assert!(changes[0].data["updated_at"].as_str() < changes[1].data["updated_at"].as_str());
}

#[test]
fn unknown_id_is_not_found() {
    let mut o = org();
    let r = o.upsert(
        Resource::Projects,
        &obj(json!({"id": 42, "name": "x"})),
        1,
        Mode::Api,
    );
    assert_eq!(r.err(), Some(WriteError::NotFound));
}
