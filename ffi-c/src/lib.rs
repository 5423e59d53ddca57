//! C ABI for outguard.
