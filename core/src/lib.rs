//! # outguard
//!
//! An embeddable outbound-mail abuse guard. For every outbound message it answers *accept* or
//! an exact SMTP rejection, reproducing the three outbound restrictions of large hosted mail
//! services:
//!
//! - `550 5.7.705` — the tenant sent too much spam or bulk mail (or its subscription lapsed);
//! - `550 5.7.708` — the client IP is on a low-reputation list and the tenant has no exception;
//! - `550 5.7.750` — the tenant sent more than an allowance from domains it never registered.
//!
//! The crate is `#![no_std]`, needs no allocator and no clock: every call takes `now` (Unix
//! seconds), capacity is fixed when the [`Engine`] is built, and the caller provides the
//! storage ([`SliceStorage`] over static buffers, or `HeapStorage` with the `std` feature).
//! A full table is an [`Error::TableFull`] value, never a panic.
//!
//! ```
//! use outguard::{Engine, Capacity, RuleSet, SliceStorage, Message, Verdict, Reason};
//! # #[cfg(feature = "std")] {
//! let cap = Capacity::default();
//! let mut engine = Engine::new(outguard::HeapStorage::new(&cap), cap, RuleSet::default()).unwrap();
//! let contoso = engine.add_tenant("contoso", true).unwrap();
//! engine.add_domain(contoso, "contoso.com", false, true).unwrap();
//! let msg = Message { tenant: Some("contoso"), ..Message::new("alice@contoso.com") };
//! let d = engine.check(1_790_000_000, &msg);
//! assert!(d.accepted());
//! # }
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod address;
pub mod cidr;
mod engine;
mod error;
mod event;
pub mod explain;
mod hash;
pub mod ndr;
mod reply;
mod rules;
pub mod snapshot;
mod storage;
pub mod window;

#[cfg(feature = "std")]
pub mod policy;
#[cfg(feature = "shared")]
pub mod shared;

pub use cidr::Cidr;
pub use engine::{
    name_cost, suspicion, Attribution, BlockEnd, ConnectorId, Counters, Decision, Engine, Message,
    Meta, Restriction, RuleStatus, SenderClass, SuspiciousConnector, TenantId, TenantStatus, Usage,
    MAX_NAME,
};
pub use error::{Error, Table};
pub use event::{Event, EventKind, Events};
pub use explain::{explain, Audience, Lang};
pub use reply::Reason;
pub use rules::*;
pub use snapshot::RestoreReport;
#[cfg(feature = "std")]
pub use storage::HeapStorage;
pub use storage::{
    Capacity, ConnectorRecord, DomainEntry, Layout, Parts, PartsMut, RangeEntry, RuleState,
    SliceStorage, Storage, TenantRecord,
};
