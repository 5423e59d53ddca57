//! The panic boundary: every exported function runs its body inside [`guard`] (or
//! [`guard_or`]), so a Rust panic never unwinds into C. The release profile keeps
//! `panic = "unwind"` for this; with `panic = "abort"` a panic would end the process instead.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::og_result;

/// Runs `f`; a panic becomes `OG_RESULT_PANIC`. Inlined: every export has its own instance,
/// called once, and inlined its arguments stay in registers instead of going through memory.
#[inline]
pub(crate) fn guard(f: impl FnOnce() -> Result<(), og_result>) -> og_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => og_result::Ok,
        Ok(Err(e)) => e,
        Err(_) => og_result::Panic,
    }
}

/// Runs `f`; a panic gives `fallback` (for functions that return a value, not a result).
pub(crate) fn guard_or<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_results() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        assert_eq!(guard(|| panic!("boom")), og_result::Panic);
        assert_eq!(guard_or(7, || panic!("boom")), 7);
        std::panic::set_hook(prev);
        assert_eq!(guard(|| Err(og_result::NotFound)), og_result::NotFound);
        assert_eq!(guard(|| Ok(())), og_result::Ok);
    }
}
