//! Consuming `fyle.org-settings.v1`: a Fyle org's settings, from its `UPDATED` ORG_SETTING
//! webhooks (ingest relays them), stored on the workspace as the incumbent stores them —
//! `{"regional_settings": data.regional_settings}` (#6) — and published with its snapshot.
//!
//! Runs inside the platform's idempotent wrapper (one transaction per envelope, redeliveries
//! change nothing). Newest wins by the time ingest received the webhook: an older delivery
//! arriving late changes nothing; the same settings again move only that time, without a new
//! snapshot. A change bumps the workspace's version and puts the snapshot in the outbox in the
//! same transaction, like every registry change.
//!
//! Failure policy: a body whose data is not a JSON object is poison (ingest only relays JSON
//! objects, so it is a bug or a forgery); database errors are classified by the wrapper.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::{time, v1::FyleOrgSettingWebhook};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::{schema::workspaces, store};

/// The effect of `fyle.org-settings.v1`; `settings_topic` is where snapshots go.
#[derive(Debug, Clone)]
pub struct OrgSettingEvents {
    pub settings_topic: String,
}

/// What the incumbent keeps of an ORG_SETTING webhook's `data`.
pub fn stored_form(data: &Value) -> Option<Value> {
    let data = data.as_object()?;
    Some(json!({
        "regional_settings": data.get("regional_settings").cloned().unwrap_or(Value::Null),
    }))
}

impl EffectHandler for OrgSettingEvents {
    type Payload = FyleOrgSettingWebhook;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, FyleOrgSettingWebhook>,
    ) -> Result<(), EffectError> {
        let data: Value = serde_json::from_str(&event.payload.data_json).unwrap_or(Value::Null);
        let Some(settings) = stored_form(&data) else {
            return Err(HandlerError::Poison(
                "ORG_SETTING webhook data is not a JSON object".into(),
            )
            .into());
        };
        let received_at: DateTime<Utc> = event
            .payload
            .received_at
            .as_ref()
            .and_then(time::from_proto)
            .or(event.occurred_at)
            .unwrap_or_else(Utc::now);
        let workspace_id = event.workspace.workspace_id;
        let conn = &mut *tx.conn;
        let Some((stored, stored_at)): Option<(Value, Option<DateTime<Utc>>)> = workspaces::table
            .find(workspace_id)
            .select((workspaces::org_settings, workspaces::org_settings_at))
            .for_update()
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(());
        };
        if stored_at.is_some_and(|at| at >= received_at) {
            metrics::counter!("mapping_org_settings_stale_total").increment(1);
            return Ok(());
        }
        let changed = stored != settings;
        diesel::update(workspaces::table.find(workspace_id))
            .set((
                workspaces::org_settings.eq(&settings),
                workspaces::org_settings_at.eq(received_at),
            ))
            .execute(conn)
            .await?;
        if changed {
            store::publish_change(conn, &self.settings_topic, workspace_id)
                .await
                .map(drop)
                .map_err(|e| match e {
                    store::StoreError::Db(attrsync_db::DbError::Query(q)) => EffectError::Db(q),
                    other => HandlerError::Failed(other.to_string()).into(),
                })?;
            tracing::info!(workspace_id, "Fyle org settings stored");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_regional_settings_are_kept_as_the_incumbent_keeps_them() {
        let data = json!({"org_id": "or1", "regional_settings": {"locale": {"timezone": "UTC"}},
                          "other": 1});
        assert_eq!(
            stored_form(&data),
            Some(json!({"regional_settings": {"locale": {"timezone": "UTC"}}}))
        );
        assert_eq!(
            stored_form(&json!({"org_id": "or1"})),
            Some(json!({"regional_settings": null}))
        );
        assert_eq!(stored_form(&json!([1, 2])), None);
    }
}
