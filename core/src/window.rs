//! Sliding-window counters in fixed memory: a ring of time slots plus running totals.
//!
//! A counter set of `width` columns is `slots + 1` groups of `width` cells: the ring (slot of
//! epoch `e` at group `e % slots`), then one group of running totals over the ring. The newest
//! slot is the one of epoch `head` (= `now / slot_len`). Moving forward zeroes the slots that
//! fell out of the window and takes them off the totals; a `now` earlier than `head` counts
//! into the newest slot, so time going backwards never corrupts the ring. Precision is one
//! slot. Reading the window at the newest epoch costs one load per column.

/// Length of one slot for a window split into `slots` slots (at least one second).
#[inline]
pub fn slot_len(window: u64, slots: usize) -> u64 {
    (window / slots.max(1) as u64).max(1)
}

/// Division by a slot length fixed ahead of time (the epoch of a time): a multiplication and a
/// correction, where a division would take several times as long on the path of every
/// decision. Exact for every `u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotDiv {
    d: u64,
    /// `floor((2^64 - 1) / d)`: the estimate `mulhi(n, m)` is `n / d` or one less.
    m: u64,
}

impl SlotDiv {
    /// Division by `d` (at least 1: `slot_len` never gives 0; 0 is taken as 1).
    pub const fn new(d: u64) -> SlotDiv {
        let d = if d == 0 { 1 } else { d };
        SlotDiv { d, m: u64::MAX / d }
    }

    /// `n / d`.
    #[inline(always)]
    pub fn div(&self, n: u64) -> u64 {
        let q = ((n as u128 * self.m as u128) >> 64) as u64;
        // q <= n / d, so q * d <= n; one step brings q up to the quotient.
        let r = n - q * self.d;
        q + (r >= self.d) as u64
    }
}

/// Cells a counter set of `slots` slots and `width` columns needs (ring plus totals).
#[inline]
pub const fn cells(slots: usize, width: usize) -> usize {
    (slots + 1) * width
}

/// Ring slots of a counter set.
#[inline]
fn ring_slots(cells: &[u32], width: usize) -> usize {
    (cells.len() / width.max(1)).saturating_sub(1)
}

/// Ring positions of the `gap` (at most `slots`) oldest slots of a ring whose newest slot is
/// of epoch `head`, oldest first: the slots that leave the window by epoch `head + gap`.
#[inline]
fn oldest(head: u64, slots: usize, gap: usize) -> impl Iterator<Item = usize> {
    let first = (head % slots as u64) as usize + 1;
    (first..first + gap).map(move |s| if s >= slots { s - slots } else { s })
}

/// Moves the ring forward to epoch `e`, zeroing slots that left the window and taking them
/// off the totals.
#[inline]
pub fn advance(cells: &mut [u32], width: usize, head: &mut u64, e: u64) {
    let slots = ring_slots(cells, width);
    if slots == 0 || e <= *head {
        return;
    }
    let gap = (e - *head).min(slots as u64) as usize;
    let totals = slots * width;
    for s in oldest(*head, slots, gap) {
        for col in 0..width {
            let v = core::mem::take(&mut cells[s * width + col]);
            cells[totals + col] = cells[totals + col].saturating_sub(v);
        }
    }
    *head = e;
}

/// Adds `n` to column `col` of the newest slot (after [`advance`]) and to its total.
#[inline]
pub fn add(cells: &mut [u32], width: usize, head: u64, col: usize, n: u32) {
    let slots = ring_slots(cells, width);
    if slots == 0 || col >= width {
        return;
    }
    let i = (head % slots as u64) as usize * width + col;
    cells[i] = cells[i].saturating_add(n);
    let t = slots * width + col;
    cells[t] = cells[t].saturating_add(n);
}

/// Sum of column `col` over the slots still inside the window at epoch `e`.
#[inline]
pub fn sum(cells: &[u32], width: usize, head: u64, e: u64, col: usize) -> u32 {
    let slots = ring_slots(cells, width);
    if slots == 0 || col >= width {
        return 0;
    }
    let total = cells[slots * width + col];
    if e <= head {
        // The newest slot is current (or time went backwards): everything counts.
        return total;
    }
    if e - head >= slots as u64 {
        // The newest slot itself has left the window (an idle tenant).
        return 0;
    }
    // Slots of epochs head-slots+1 ..= head-slots+gap have left the window.
    let expired = oldest(head, slots, (e - head) as usize)
        .fold(0u32, |n, s| n.saturating_add(cells[s * width + col]));
    total.saturating_sub(expired)
}

/// Recomputes the totals group from the ring (after copying a ring in from elsewhere).
pub fn recount(cells: &mut [u32], width: usize) {
    let slots = ring_slots(cells, width);
    for col in 0..width {
        let mut t = 0u32;
        for s in 0..slots {
            t = t.saturating_add(cells[s * width + col]);
        }
        if let Some(c) = cells.get_mut(slots * width + col) {
            *c = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_div_is_division() {
        extern crate std;
        use std::vec::Vec;
        let ds = [
            1u64,
            2,
            3,
            5,
            7,
            60,
            150,
            3600,
            86_400 / 24,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX / 3,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &d in &ds {
            let sd = SlotDiv::new(d);
            let mut ns: Vec<u64> = [
                0u64,
                1,
                2,
                d - 1,
                d,
                d.wrapping_add(1),
                u64::MAX,
                u64::MAX - 1,
            ]
            .into_iter()
            .chain([u64::MAX / 2, 1_790_000_000])
            .collect();
            for k in [1u64, 2, 3, 1_000, 1 << 20, 1 << 40] {
                if let Some(m) = d.checked_mul(k) {
                    ns.extend([m - 1, m, m.saturating_add(1)]);
                }
            }
            let mut x = d ^ 0x9E37_79B9_7F4A_7C15;
            for _ in 0..2_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ns.push(x);
                ns.push(x >> (x % 64));
            }
            for n in ns {
                assert_eq!(sd.div(n), n / d, "{n} / {d}");
            }
        }
        assert_eq!(SlotDiv::new(0).div(7), 7);
    }

    #[test]
    fn slides() {
        let mut cells = [0u32; cells(4, 1)];
        let mut head = 10;
        add(&mut cells, 1, head, 0, 5);
        assert_eq!(sum(&cells, 1, head, 10, 0), 5);
        advance(&mut cells, 1, &mut head, 12);
        add(&mut cells, 1, head, 0, 1);
        assert_eq!(sum(&cells, 1, head, 12, 0), 6);
        assert_eq!(sum(&cells, 1, head, 13, 0), 6);
        assert_eq!(sum(&cells, 1, head, 14, 0), 1, "epoch 10 left the window");
        assert_eq!(sum(&cells, 1, head, 16, 0), 0);
        // Time going backwards: counts into the newest slot, nothing lost.
        advance(&mut cells, 1, &mut head, 3);
        add(&mut cells, 1, head, 0, 2);
        assert_eq!(head, 12);
        assert_eq!(sum(&cells, 1, head, 12, 0), 8);
        assert_eq!(sum(&cells, 1, head, 5, 0), 8);
        // Moving forward takes expired slots off the total.
        advance(&mut cells, 1, &mut head, 14);
        assert_eq!(sum(&cells, 1, head, 14, 0), 3);
        // Jump far ahead clears everything.
        advance(&mut cells, 1, &mut head, 1000);
        assert_eq!(sum(&cells, 1, head, 1000, 0), 0);
        assert_eq!(cells, [0; 5]);
    }

    #[test]
    fn two_columns() {
        let mut cells = [0u32; cells(2, 2)];
        let mut head = 0;
        add(&mut cells, 2, head, 0, 3);
        add(&mut cells, 2, head, 1, 1);
        advance(&mut cells, 2, &mut head, 1);
        add(&mut cells, 2, head, 0, 2);
        assert_eq!(sum(&cells, 2, head, 1, 0), 5);
        assert_eq!(sum(&cells, 2, head, 1, 1), 1);
        assert_eq!(sum(&cells, 2, head, 2, 0), 2);
        assert_eq!(sum(&cells, 2, head, 2, 1), 0);
        let mut copy = cells;
        copy[4] = 0;
        copy[5] = 0;
        recount(&mut copy, 2);
        assert_eq!(copy, cells);
    }

    #[test]
    fn totals_match_a_full_sum() {
        // Random walk against a brute-force sum of the ring.
        let mut cells = [0u32; cells(5, 1)];
        let mut head = 0u64;
        let mut x = 12345u64;
        let mut log: [(u64, u32); 200] = [(0, 0); 200];
        for step in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = head + (x % 3);
            advance(&mut cells, 1, &mut head, e);
            let n = (x >> 8) as u32 % 4;
            add(&mut cells, 1, head, 0, n);
            log[step] = (head, n);
            let at = head + (x >> 16) % 7;
            let brute: u32 = log[..=step]
                .iter()
                .filter(|(h, _)| h + 5 > at)
                .map(|(_, n)| n)
                .sum();
            assert_eq!(sum(&cells, 1, head, at, 0), brute, "step {step}");
        }
    }
}
