//! Python bindings for outguard.
