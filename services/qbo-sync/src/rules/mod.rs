//! qbo-sync's pure rules: what QBO entities mean as destination attributes, and the other
//! decisions a sync makes — no I/O, no database, no HTTP, so every rule is reachable from a unit
//! test with a `serde_json::json!` fixture.
//!
//! Read in this order:
//! - [`entity`](mod@entity): the QBO entities we sync ([`SyncEntity`]) and what QBO supports
//!   for each.
//! - [`draft`]: a destination attribute before it is stored ([`DestinationDraft`]) and its
//!   content hash.
//! - [`derive`](mod@derive): QBO entity JSON → drafts ([`derive()`](fn@derive)), per the
//!   incumbent's rules and where we deliberately differ; [`tax`]: tax codes' effective rates.
//! - [`classify`](mod@classify): a draft against the stored row → created / updated / renamed /
//!   deactivated / reactivated, or nothing.
//! - [`coalesce`](mod@coalesce): a batch of webhook changes → one fetch plan per realm.
//! - [`limits`]: the size limit (#30). [`pull_mode`]: full, CDC or `LastUpdatedTime` pulls.
//!
//! "#N" in these docs are the items of the incumbent's checklist
//! (`../shared/reference/incumbent-fyle-qbo-api.md` §6); "reference §N" is
//! `../shared/reference/external-apis.md`.

pub mod classify;
pub mod coalesce;
pub mod derive;
pub mod draft;
pub mod entity;
mod fields;
pub mod limits;
pub mod pull_mode;
pub mod tax;

pub use self::{
    classify::{ChangeKind, StoredAttribute, classify, classify_change},
    coalesce::{
        ChunkLimits, Deactivation, EntityChange, EntityPlan, FetchPlan, Merge, Operation, coalesce,
    },
    derive::{
        CHARTS_OF_ACCOUNTS, CategorySyncVersion, Derived, SkipReason, Slot, WorkspaceRules, derive,
        retired_slots, slots,
    },
    draft::{
        AttributeType, DestinationDraft, FYLE_NAME_MAX_CHARS, content_hash, default_display_name,
        display_name,
    },
    entity::SyncEntity,
    fields::{DELETED_MARKER, PulledObject, clean_name, collapse_code, parse_qbo_time},
    limits::{SizeLimit, sync_allowed},
    pull_mode::{PullMode, incremental_mode},
    tax::{NoTaxRates, Rate, TaxRateLookup, required_tax_rate_ids, tax_rate_entry},
};
