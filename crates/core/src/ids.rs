//! Identifiers.

use std::{fmt, num::ParseIntError, str::FromStr};

use serde::{Deserialize, Serialize};

/// A workspace: one Fyle org connected to one QBO company. The id is the integer the incumbent
/// already uses in its webhook URL (`/workspaces/{id}/fyle/exports/`), so existing Fyle
/// subscriptions keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(pub i64);

impl WorkspaceId {
    /// The Kafka message key: one workspace's events share a partition and stay in order.
    pub fn kafka_key(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for WorkspaceId {
    type Err = ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(WorkspaceId)
    }
}
