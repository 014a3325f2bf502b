//! Topic names and creation.
//!
//! Every topic is keyed by workspace id, so one workspace's events stay in order on one
//! partition. Services create the topics they produce and consume (and the `.dlq` of each
//! consumed topic) at start-up; creating an existing topic is not an error.

use std::time::Duration;

use attrsync_config::KafkaConfig;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::{KafkaError, Result};

pub const FYLE_ATTRIBUTE_WEBHOOKS: &str = "fyle.attribute-webhooks.v1";
pub const FYLE_EXPENSE_WEBHOOKS: &str = "fyle.expense-webhooks.v1";
pub const FYLE_ORG_SETTINGS: &str = "fyle.org-settings.v1";
pub const QBO_ENTITY_CHANGES: &str = "qbo.entity-changes.v1";
pub const EXPENSE_ATTRIBUTES_CHANGED: &str = "sync.expense-attributes.v1";
pub const DESTINATION_ATTRIBUTES_CHANGED: &str = "sync.destination-attributes.v1";
pub const WORKSPACE_SETTINGS: &str = "settings.workspaces.v1";
pub const IMPORT_COMMANDS: &str = "imports.commands.v1";
pub const IMPORT_EVENTS: &str = "imports.events.v1";

/// Every topic of the system, for operators and the local stack.
pub const ALL: [&str; 9] = [
    FYLE_ATTRIBUTE_WEBHOOKS,
    FYLE_EXPENSE_WEBHOOKS,
    FYLE_ORG_SETTINGS,
    QBO_ENTITY_CHANGES,
    EXPENSE_ATTRIBUTES_CHANGED,
    DESTINATION_ATTRIBUTES_CHANGED,
    WORKSPACE_SETTINGS,
    IMPORT_COMMANDS,
    IMPORT_EVENTS,
];

/// The dead-letter topic of `topic`.
pub fn dlq(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Whether a topic keeps only the newest message per key (the settings snapshots).
pub fn is_compacted(name: &str) -> bool {
    name == WORKSPACE_SETTINGS
}

/// Creates `names` (un-prefixed), plus the `.dlq` of each in `consumed`, if missing.
pub async fn ensure(config: &KafkaConfig, names: &[&str], consumed: &[&str]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = crate::base_client_config(config).create()?;
    let mut wanted: Vec<(String, bool)> = names
        .iter()
        .map(|n| (config.topic(n), is_compacted(n)))
        .collect();
    wanted.extend(consumed.iter().map(|n| (config.topic(&dlq(n)), false)));
    wanted.sort();
    wanted.dedup();
    let specs: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, compacted)| {
            let topic = NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication_factor),
            );
            if *compacted {
                topic
                    .set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "60000")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for outcome in admin.create_topics(&specs, &options).await? {
        match outcome {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
