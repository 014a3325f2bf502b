//! The contracts between services: the Kafka [`v1::Envelope`] with its event payloads, and the
//! gRPC services of mapping, fyle-sync, qbo-sync, import-to-fyle and ingest.
//!
//! Generated from `proto/attrsync/v1/*.proto` at build time. Field numbers are never reused;
//! enum zero values are `*_UNSPECIFIED`. Helpers for timestamps live in [`time`].

#[allow(
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("attrsync.v1");
}

/// The encoded descriptor set of every proto file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/attrsync_descriptor.bin"));

pub mod time {
    //! Conversions between protobuf timestamps and `chrono`.

    use chrono::{DateTime, Utc};
    pub use prost_types::Timestamp;

    pub fn to_proto(t: DateTime<Utc>) -> Timestamp {
        Timestamp {
            seconds: t.timestamp(),
            nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
        }
    }

    pub fn from_proto(t: &Timestamp) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
    }

    pub fn now() -> Timestamp {
        to_proto(Utc::now())
    }
}

pub use v1::envelope::Payload;
