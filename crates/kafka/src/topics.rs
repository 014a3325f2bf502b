//! Topics: each declared once with the payload it carries ([`Topic`]), and their creation.
//!
//! Every topic is keyed by workspace id, so one workspace's events stay in order on one
//! partition. Services create the topics they produce and consume (and the `.dlq` of each
//! consumed topic) at start-up; creating an existing topic is not an error.

use std::{marker::PhantomData, time::Duration};

use attrsync_config::KafkaConfig;
use attrsync_proto::{Payload, v1};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

use crate::{KafkaError, Result};

/// A topic and the one payload variant its messages carry. One declaration gives the producer
/// side, the subscription, [`ensure`] and the handler's payload type, so they cannot disagree.
pub struct Topic<P> {
    name: &'static str,
    compacted: bool,
    _payload: PhantomData<fn() -> P>,
}

impl<P> Topic<P> {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            compacted: false,
            _payload: PhantomData,
        }
    }

    const fn compacted(name: &'static str) -> Self {
        Self {
            name,
            compacted: true,
            _payload: PhantomData,
        }
    }

    /// The un-prefixed name, e.g. `fyle.attribute-webhooks.v1`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// How the topic is created.
    pub const fn spec(&self) -> TopicSpec {
        TopicSpec {
            name: self.name,
            compacted: self.compacted,
        }
    }
}

impl<P> Clone for Topic<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Topic<P> {}

impl<P> std::fmt::Debug for Topic<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A topic's name and creation settings, whatever it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicSpec {
    pub name: &'static str,
    /// Keeps only the newest message per key (the settings snapshots).
    pub compacted: bool,
}

/// A payload variant of the envelope, as carried by one typed topic.
pub trait TopicPayload: Sized + Send + Sync + std::fmt::Debug + 'static {
    /// The variant's name, for errors.
    const VARIANT: &'static str;
    /// This variant out of an envelope's payload, if it is this variant.
    fn from_payload(payload: Payload) -> Option<Self>;
    fn into_payload(self) -> Payload;
}

macro_rules! topic_payloads {
    ($($variant:ident),* $(,)?) => {$(
        impl TopicPayload for v1::$variant {
            const VARIANT: &'static str = stringify!($variant);
            fn from_payload(payload: Payload) -> Option<Self> {
                match payload {
                    Payload::$variant(inner) => Some(inner),
                    _ => None,
                }
            }
            fn into_payload(self) -> Payload {
                Payload::$variant(self)
            }
        }
    )*};
}

topic_payloads!(
    FyleAttributeWebhook,
    FyleExpenseWebhook,
    FyleOrgSettingWebhook,
    QboEntityChange,
    ExpenseAttributesChanged,
    DestinationAttributesChanged,
    WorkspaceSnapshot,
    ImportRequested,
    ImportCompleted,
    WebhookHealthChanged,
    FyleAttributeAutoCreated,
    ConnectionStatusChanged,
);

pub const FYLE_ATTRIBUTE_WEBHOOKS: Topic<v1::FyleAttributeWebhook> =
    Topic::new("fyle.attribute-webhooks.v1");
pub const FYLE_EXPENSE_WEBHOOKS: Topic<v1::FyleExpenseWebhook> =
    Topic::new("fyle.expense-webhooks.v1");
pub const FYLE_ORG_SETTINGS: Topic<v1::FyleOrgSettingWebhook> = Topic::new("fyle.org-settings.v1");
pub const QBO_ENTITY_CHANGES: Topic<v1::QboEntityChange> = Topic::new("qbo.entity-changes.v1");
pub const EXPENSE_ATTRIBUTES_CHANGED: Topic<v1::ExpenseAttributesChanged> =
    Topic::new("sync.expense-attributes.v1");
pub const DESTINATION_ATTRIBUTES_CHANGED: Topic<v1::DestinationAttributesChanged> =
    Topic::new("sync.destination-attributes.v1");
pub const WORKSPACE_SETTINGS: Topic<v1::WorkspaceSnapshot> =
    Topic::compacted("settings.workspaces.v1");
pub const IMPORT_COMMANDS: Topic<v1::ImportRequested> = Topic::new("imports.commands.v1");
pub const IMPORT_EVENTS: Topic<v1::ImportCompleted> = Topic::new("imports.events.v1");
pub const WEBHOOK_HEALTH: Topic<v1::WebhookHealthChanged> = Topic::new("sync.webhook-health.v1");
pub const FYLE_ATTRIBUTE_AUTO_CREATED: Topic<v1::FyleAttributeAutoCreated> =
    Topic::new("sync.fyle-auto-created.v1");
pub const CONNECTION_STATUS: Topic<v1::ConnectionStatusChanged> = Topic::new("sync.connections.v1");

/// Every topic of the system, for operators and the local stack.
pub const ALL: [TopicSpec; 12] = [
    FYLE_ATTRIBUTE_WEBHOOKS.spec(),
    FYLE_EXPENSE_WEBHOOKS.spec(),
    FYLE_ORG_SETTINGS.spec(),
    QBO_ENTITY_CHANGES.spec(),
    EXPENSE_ATTRIBUTES_CHANGED.spec(),
    DESTINATION_ATTRIBUTES_CHANGED.spec(),
    WORKSPACE_SETTINGS.spec(),
    IMPORT_COMMANDS.spec(),
    IMPORT_EVENTS.spec(),
    WEBHOOK_HEALTH.spec(),
    FYLE_ATTRIBUTE_AUTO_CREATED.spec(),
    CONNECTION_STATUS.spec(),
];

/// The dead-letter topic of `topic`.
pub fn dlq(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Creates `topics`, plus the `.dlq` of each in `consumed`, if missing.
pub async fn ensure(
    config: &KafkaConfig,
    topics: &[TopicSpec],
    consumed: &[TopicSpec],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = crate::base_client_config(config).create()?;
    let mut wanted: Vec<(String, bool)> = topics
        .iter()
        .chain(consumed)
        .map(|t| (config.topic(t.name), t.compacted))
        .collect();
    wanted.extend(consumed.iter().map(|t| (config.topic(&dlq(t.name)), false)));
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
