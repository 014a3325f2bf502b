//! Settings changes that alter what qbo-sync stores: the chart of accounts, `import_items` and
//! the category naming (V1/V2) decide which QBO accounts and items become rows and how they
//! are named, so widening the chart or turning items on must bring the values QBO already
//! has — the incumbent syncs accounts on every settings save. Without this, those values
//! would wait for their next change or the 24-hour full pass.
//!
//! A task wakes every `rules_watch.tick` and, for every workspace of a connected realm,
//! compares the rules of its projection ([`fingerprint`], pure) with the ones its accounts
//! and items were last pulled under (`qbo_rules_seen`, read in one query per tick). A
//! workspace seen for the first time is recorded (its connection pulled it; a change made
//! before that first tick waits for the 24-hour full pass); a difference runs a forced full
//! pass of that entity ([`crate::pull::Puller::sync`], under the realm × entity pull lease) and,
//! once it ran — or the size limit stops the entity whatever the rules — records the new
//! rules.
//!
//! Failure policy: a pass that failed or was held elsewhere leaves the old rules recorded, so
//! the next tick tries again; nothing is lost, at worst repeated. Every replica runs the task;
//! the pull lease keeps two from pulling one entity at once.

use std::{collections::HashMap, time::Duration};

use attrsync_db::{DbError, Pool};
use attrsync_kafka::workspaces;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;

use crate::{
    pull::{PassKind, Puller},
    rules::SyncEntity,
    schema::qbo_credentials as qc,
    settings::{self, QboWorkspace},
};

/// The entities whose stored rows depend on the workspace's settings.
const WATCHED: [SyncEntity; 2] = [SyncEntity::Account, SyncEntity::Item];

/// What of `workspace`'s rules decides the rows of `entity`: the chart of accounts (as a set)
/// and the naming for accounts; whether items are stored, and their naming, for items.
pub(crate) fn fingerprint(workspace: &QboWorkspace, entity: SyncEntity) -> String {
    let rules = &workspace.rules;
    match entity {
        SyncEntity::Item => format!(
            "items={};{:?}",
            rules.import_items, rules.category_sync_version
        ),
        _ => {
            let mut charts = rules.charts_of_accounts.clone();
            charts.sort();
            charts.dedup();
            format!(
                "charts={};{:?}",
                charts.join("|"),
                rules.category_sync_version
            )
        }
    }
}

#[derive(QueryableByName)]
struct SeenRow {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    qbo_entity: String,
    #[diesel(sql_type = Text)]
    fingerprint: String,
}

/// The watcher task.
#[derive(Clone)]
pub(crate) struct RulesWatch {
    pub(crate) pool: Pool,
    pub(crate) puller: Puller,
    pub(crate) tick: Duration,
}

impl RulesWatch {
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.tick) => {
                    if let Err(e) = self.once().await {
                        tracing::warn!(error = %e, "settings changes not checked; next tick");
                    }
                }
            }
        }
    }

    async fn once(&self) -> Result<(), DbError> {
        let workspaces = self.connected().await?;
        let mut conn = self.pool.get().await?;
        let seen: HashMap<(i64, String), String> =
            diesel::sql_query("SELECT workspace_id, qbo_entity, fingerprint FROM qbo_rules_seen")
                .load::<SeenRow>(&mut conn)
                .await?
                .into_iter()
                .map(|r| ((r.workspace_id, r.qbo_entity), r.fingerprint))
                .collect();
        drop(conn);
        for workspace in &workspaces {
            for entity in WATCHED {
                let key = (workspace.workspace_id, entity.as_str().to_owned());
                let now = fingerprint(workspace, entity);
                match seen.get(&key) {
                    Some(before) if *before == now => {}
                    Some(_) => {
                        if self.repull(workspace, entity).await {
                            self.record(workspace.workspace_id, entity, &now).await?;
                        }
                    }
                    // First sight: its connection pulled it under these rules.
                    None => self.record(workspace.workspace_id, entity, &now).await?,
                }
            }
        }
        Ok(())
    }

    /// Every live workspace of a connected realm, with its rules.
    async fn connected(&self) -> Result<Vec<QboWorkspace>, DbError> {
        let mut conn = self.pool.get().await?;
        let realms: Vec<String> = qc::table
            .filter(qc::status.eq(crate::reconcile::CONNECTED))
            .select(qc::realm_id)
            .load(&mut conn)
            .await?;
        let mut out = Vec::new();
        for realm in realms {
            for w in workspaces::find_by_realm(&mut conn, &realm).await? {
                out.push(settings::of(&w));
            }
        }
        Ok(out)
    }

    /// A forced full pass of `entity`; whether it settled the rules (it ran, or the size limit
    /// stops the entity whatever the rules).
    async fn repull(&self, workspace: &QboWorkspace, entity: SyncEntity) -> bool {
        match self
            .puller
            .sync(workspace, true, PassKind::Full, &[entity])
            .await
        {
            Ok(pulls) => {
                let done = pulls
                    .iter()
                    .all(|p| matches!(p.outcome, "PULLED_FULL" | "SKIPPED_SIZE_LIMIT"));
                if done {
                    metrics::counter!("qbo_sync_settings_repulls_total", "entity" => entity.as_str())
                        .increment(1);
                    tracing::info!(
                        workspace_id = workspace.workspace_id,
                        entity = entity.as_str(),
                        "pulled again: the settings changed what is stored"
                    );
                }
                done
            }
            Err(e) => {
                tracing::warn!(workspace_id = workspace.workspace_id,
                    entity = entity.as_str(), error = %e,
                    "re-pull after a settings change failed; next tick");
                false
            }
        }
    }

    async fn record(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
        fingerprint: &str,
    ) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        diesel::sql_query(
            "INSERT INTO qbo_rules_seen (workspace_id, qbo_entity, fingerprint) \
             VALUES ($1, $2, $3) ON CONFLICT (workspace_id, qbo_entity) \
             DO UPDATE SET fingerprint = excluded.fingerprint, updated_at = now()",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(entity.as_str())
        .bind::<Text, _>(fingerprint)
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::WorkspaceRules;

    fn workspace(charts: &[&str], import_items: bool) -> QboWorkspace {
        QboWorkspace {
            workspace_id: 1,
            realm_id: Some("r".into()),
            rules: WorkspaceRules {
                charts_of_accounts: charts.iter().map(|c| (*c).to_owned()).collect(),
                import_items,
                ..WorkspaceRules::default()
            },
            created_at: None,
            auto_create: Default::default(),
        }
    }

    #[test]
    fn only_what_decides_an_entitys_rows_changes_its_fingerprint() {
        let base = workspace(&["Expense"], false);
        let widened = workspace(&["Expense", "Other Expense"], false);
        let reordered = workspace(&["Other Expense", "Expense"], false);
        let items_on = workspace(&["Expense"], true);
        let account = |w: &QboWorkspace| fingerprint(w, SyncEntity::Account);
        let item = |w: &QboWorkspace| fingerprint(w, SyncEntity::Item);
        assert_ne!(account(&base), account(&widened));
        assert_eq!(account(&widened), account(&reordered), "the chart is a set");
        assert_eq!(
            account(&base),
            account(&items_on),
            "items do not change accounts"
        );
        assert_ne!(item(&base), item(&items_on));
        assert_eq!(
            item(&base),
            item(&widened),
            "the chart does not change items"
        );
    }
}
