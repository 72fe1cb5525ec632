//! [`MemoryBudget`]: one bound, shared by every connection, on the message
//! octets the server holds (`MAIL_LASER_MAX_BUFFERED_BYTES`).
//!
//! The size limit bounds one message; this bounds all of them together, so
//! a crowd of clients streaming large bodies cannot take the process past
//! the budget. Octets count as they arrive, in [`GRANULE`] steps, against
//! the connection's [`Reservation`], which holds them until the message is
//! answered (parse and delivery included) and gives them back when dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Reservations grow in steps of this many octets: one atomic update per
/// 16 KiB read, not per read, and every message counts at least this much
/// (its buffers do cost about that).
pub const GRANULE: usize = 16 * 1024;

/// The shared budget; clones share the same count.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limit: usize,
    in_use: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` octets.
    pub fn new(limit: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                limit,
                in_use: AtomicUsize::new(0),
            }),
        }
    }

    /// No bound (tests, tools).
    pub fn unlimited() -> Self {
        Self::new(usize::MAX)
    }

    /// Octets reserved now, by all connections.
    pub fn in_use(&self) -> usize {
        self.shared.in_use.load(Ordering::Relaxed)
    }

    /// The configured bound.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Whether a new message could get its first octets: `false` means
    /// DATA and BDAT are answered `452` before any octet is read.
    pub fn has_room(&self) -> bool {
        self.in_use().saturating_add(GRANULE) <= self.shared.limit
    }

    /// An empty reservation against this budget.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: 0,
        }
    }

    fn try_take(&self, octets: usize) -> bool {
        self.shared
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |in_use| {
                in_use
                    .checked_add(octets)
                    .filter(|&total| total <= self.shared.limit)
            })
            .is_ok()
    }

    fn give_back(&self, octets: usize) {
        self.shared.in_use.fetch_sub(octets, Ordering::AcqRel);
    }
}

/// The octets one connection holds against the budget.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    held: usize,
}

impl Reservation {
    /// Makes the reservation cover `octets` in all; `false` when the budget
    /// cannot (the reservation is left as it was).
    pub fn cover(&mut self, octets: usize) -> bool {
        if octets <= self.held {
            return true;
        }
        let target = octets
            .div_ceil(GRANULE)
            .saturating_mul(GRANULE)
            .min(self.budget.shared.limit);
        if target < octets {
            return false;
        }
        let more = target - self.held;
        if !self.budget.try_take(more) {
            return false;
        }
        self.held = target;
        true
    }

    /// The budget this reservation counts against.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Octets held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Gives every octet back.
    pub fn release(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
            self.held = 0;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_one_bound() {
        let budget = MemoryBudget::new(4 * GRANULE);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.cover(1));
        assert_eq!(a.held(), GRANULE);
        assert!(a.cover(2 * GRANULE));
        assert!(b.cover(2 * GRANULE));
        assert!(!budget.has_room());
        assert!(!b.cover(2 * GRANULE + 1), "the budget is spent");
        assert_eq!(b.held(), 2 * GRANULE, "a refused cover changes nothing");
        a.release();
        assert!(budget.has_room());
        assert!(b.cover(4 * GRANULE - GRANULE));
        drop(b);
        assert_eq!(budget.in_use(), 0, "dropping gives the octets back");
    }

    #[test]
    fn a_budget_smaller_than_a_granule_still_holds() {
        let budget = MemoryBudget::new(100);
        let mut reservation = budget.reservation();
        assert!(reservation.cover(100));
        assert!(!reservation.cover(101));
        assert_eq!(budget.in_use(), 100);
    }
}
