//! The client over real HTTP against the Fyle simulator (`attrsync_sandbox`), started in process
//! on free ports for each test: separate accounts and data hosts, the 10 requests/second limit,
//! `updated_at` ties, fault injection and the sandbox clock.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod auth;
mod common;
mod faults;
mod paging;
mod writes;
