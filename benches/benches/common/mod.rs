//! Criterion settings shared by every benchmark target.

use std::time::Duration;

use criterion::Criterion;

/// `OUTGUARD_BENCH_QUICK=1`: a fast pass (numbers are noisier).
pub fn quick() -> bool {
    std::env::var_os("OUTGUARD_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Short measurements: the machine is small and shared, and ratios to a baseline measured in
/// the same run are the figures that count.
pub fn criterion() -> Criterion {
    let c = Criterion::default().without_plots();
    let c = if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.sample_size(25)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
    };
    c.configure_from_args()
}
