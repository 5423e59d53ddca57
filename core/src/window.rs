//! Sliding-window counters in fixed memory: a ring of time slots.
//!
//! A ring of `slots` cells-groups covers `slots * slot_len` seconds; the newest slot is the one
//! of epoch `head` (= `now / slot_len`). Moving forward zeroes the slots that fell out of the
//! window; a `now` earlier than `head` counts into the newest slot, so time going backwards
//! never corrupts the ring. Precision is one slot.

/// Length of one slot for a window split into `slots` slots (at least one second).
#[inline]
pub fn slot_len(window: u64, slots: usize) -> u64 {
    (window / slots.max(1) as u64).max(1)
}

/// Moves the ring forward to epoch `e`, zeroing slots that left the window.
#[inline]
pub fn advance(cells: &mut [u32], width: usize, head: &mut u64, e: u64) {
    let slots = cells.len() / width.max(1);
    if slots == 0 || e <= *head {
        return;
    }
    let gap = (e - *head).min(slots as u64);
    for k in 1..=gap {
        let s = ((*head + k) % slots as u64) as usize * width;
        if let Some(group) = cells.get_mut(s..s + width) {
            group.fill(0);
        }
    }
    *head = e;
}

/// Adds `n` to column `col` of the newest slot (after [`advance`]).
#[inline]
pub fn add(cells: &mut [u32], width: usize, head: u64, col: usize, n: u32) {
    let slots = cells.len() / width.max(1);
    if slots == 0 {
        return;
    }
    let i = (head % slots as u64) as usize * width + col;
    if let Some(c) = cells.get_mut(i) {
        *c = c.saturating_add(n);
    }
}

/// Sum of column `col` over the slots still inside the window at epoch `e`.
#[inline]
pub fn sum(cells: &[u32], width: usize, head: u64, e: u64, col: usize) -> u32 {
    let slots = (cells.len() / width.max(1)) as u64;
    let mut total = 0u32;
    for k in 0..slots {
        let Some(epoch) = head.checked_sub(k) else {
            break;
        };
        // Inside the window when epoch > e - slots (e earlier than head: everything counts).
        if e >= head && epoch.saturating_add(slots) <= e {
            break;
        }
        let i = (epoch % slots) as usize * width + col;
        total = total.saturating_add(cells.get(i).copied().unwrap_or(0));
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides() {
        let mut cells = [0u32; 4]; // 4 slots, width 1
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
        // Jump far ahead clears everything.
        advance(&mut cells, 1, &mut head, 1000);
        assert_eq!(sum(&cells, 1, head, 1000, 0), 0);
    }

    #[test]
    fn two_columns() {
        let mut cells = [0u32; 4]; // 2 slots, width 2
        let mut head = 0;
        add(&mut cells, 2, head, 0, 3);
        add(&mut cells, 2, head, 1, 1);
        advance(&mut cells, 2, &mut head, 1);
        add(&mut cells, 2, head, 0, 2);
        assert_eq!(sum(&cells, 2, head, 1, 0), 5);
        assert_eq!(sum(&cells, 2, head, 1, 1), 1);
        assert_eq!(sum(&cells, 2, head, 2, 0), 2);
    }
}
