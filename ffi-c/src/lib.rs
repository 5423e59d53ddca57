//! # outguard C ABI
//!
//! `liboutguard.a` / `liboutguard.so` and `include/outguard.h` (generated from this crate by
//! cbindgen): the outguard engine for mail servers written in C. Every symbol starts with
//! `og_`. The conventions (result codes, ownership, buffers, NULL, thread safety) are written
//! down in `ffi-c/README.md`; each function's documentation, copied into the header, states
//! its own.
//!
//! The crate holds no policy logic: handles, conversions, result codes and the panic
//! boundary. All `unsafe` code is in [`ffi`] (one audited file of pointer conversions).

mod engine;
mod error;
mod ffi;
mod panic;
pub mod shared;
mod text;
mod types;

pub use engine::*;
pub use error::og_result;
pub use ffi::og_event_callback;
pub use text::*;
pub use types::*;
