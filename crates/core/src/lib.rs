//! Domain types and pure rules shared by every service.
//!
//! Nothing here performs I/O: the rules that decide what a Fyle object *means* for the sync
//! (its attribute value, detail and active flag), how names are compared, and how a change is
//! detected are plain functions, so tests reach them without a database or a broker.
//!
//! - [`ids`]: identifiers (workspace).
//! - [`attribute`]: Fyle attribute types, QBO destination types, and the attribute records.
//! - [`webhook`]: every Fyle webhook action and resource, and how ingest routes them.
//! - [`derive`]: attribute derivation from Fyle objects (the incumbent's rules, keyed by source id).
//! - [`options`]: cleaning of custom SELECT field options.
//! - [`normalise`]: name normalisation and the content hash used for change detection.
//! - [`sealed`]: secrets at rest (AES-256-GCM with named, rotatable keys).
//! - [`webhook_health`]: the HEALTHY/DEGRADED state machine the periodic reconcile drives, and
//!   the schedule it sets (interval by health, next round due).

pub mod attribute;
pub mod derive;
pub mod ids;
pub mod normalise;
pub mod options;
pub mod sealed;
pub mod webhook;
pub mod webhook_health;

pub use attribute::{
    DestinationAttribute, DestinationAttributeType, ExpenseAttribute, FyleAttributeType,
};
pub use ids::WorkspaceId;
