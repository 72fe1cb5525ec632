//! [`ParseBudget`]: how much work one message may cost, and the means to
//! abandon it (deadline, cancellation).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Work units a message may cost per octet of its size. Every step of the
/// parse is linear, each visiting an octet a few times (header scan,
/// decoding, one multipart split per nesting level), so only a defect or an
/// input far outside real mail reaches this: then the parse stops and the
/// best effort is delivered, flagged `parse_truncated`.
pub const WORK_PER_OCTET: u64 = 128;

/// Work every message may cost whatever its size (headers of a tiny message).
const BASE_WORK: u64 = 1 << 20;

/// The clock and the cancellation flag are read once per this many units.
const CHECK_EVERY: u64 = 64 * 1024;

/// The allowance of one parse: work units (octets scanned, decoded or
/// rendered), a deadline and a cancellation flag, checked as the work goes.
/// Once spent it stays spent, and every step stops at its next check.
///
/// Counting units rather than time keeps the cut deterministic (the same
/// message is cut at the same place on a busy and an idle machine) and gives
/// the complexity tests an exact measure; the deadline and the flag let
/// the server abandon work whose client or server is gone.
#[derive(Debug)]
pub struct ParseBudget {
    charged: Cell<u64>,
    limit: u64,
    next_check: Cell<u64>,
    deadline: Option<Instant>,
    cancelled: Option<Arc<AtomicBool>>,
    spent: Cell<bool>,
}

impl ParseBudget {
    /// The budget for a message of `size` octets.
    pub fn for_size(size: usize) -> Self {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        Self::with_limit(
            size.saturating_mul(WORK_PER_OCTET)
                .saturating_add(BASE_WORK),
        )
    }

    /// A budget of exactly `limit` work units.
    pub fn with_limit(limit: u64) -> Self {
        Self {
            charged: Cell::new(0),
            limit,
            next_check: Cell::new(CHECK_EVERY),
            deadline: None,
            cancelled: None,
            spent: Cell::new(false),
        }
    }

    /// Also stops at `deadline`.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Also stops once `cancelled` is set (by another thread).
    pub fn with_cancellation(mut self, cancelled: Arc<AtomicBool>) -> Self {
        self.cancelled = Some(cancelled);
        self
    }

    /// Charges `units` of work; `false` once the budget is spent (the
    /// caller stops and keeps what it has).
    pub fn charge(&self, units: usize) -> bool {
        if self.spent.get() {
            return false;
        }
        let charged = self
            .charged
            .get()
            .saturating_add(u64::try_from(units).unwrap_or(u64::MAX));
        self.charged.set(charged);
        if charged > self.limit {
            self.spend("work limit");
        } else if charged >= self.next_check.get() {
            self.next_check.set(charged.saturating_add(CHECK_EVERY));
            self.check_clock_and_flag();
        }
        !self.spent.get()
    }

    /// Checks the deadline and the cancellation flag now, without charging;
    /// `false` once the budget is spent.
    pub fn check(&self) -> bool {
        if !self.spent.get() {
            self.check_clock_and_flag();
        }
        !self.spent.get()
    }

    /// Whether the parse was cut short.
    pub fn is_spent(&self) -> bool {
        self.spent.get()
    }

    /// Work units charged so far (the complexity tests' measure).
    pub fn charged(&self) -> u64 {
        self.charged.get()
    }

    fn check_clock_and_flag(&self) {
        if self
            .cancelled
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
        {
            self.spend("cancelled");
        } else if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.spend("deadline");
        }
    }

    fn spend(&self, why: &'static str) {
        self.spent.set(true);
        tracing::debug!(why, charged = self.charged.get(), "parse budget spent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_stops_at_its_limit_and_stays_spent() {
        let budget = ParseBudget::with_limit(10);
        assert!(budget.charge(10));
        assert!(!budget.charge(1));
        assert!(budget.is_spent());
        assert!(!budget.charge(0));
        assert!(!budget.check());
    }

    #[test]
    fn cancellation_is_seen_at_the_next_check() {
        let flag = Arc::new(AtomicBool::new(false));
        let budget = ParseBudget::with_limit(u64::MAX).with_cancellation(flag.clone());
        assert!(budget.check());
        flag.store(true, Ordering::Relaxed);
        assert!(
            budget.charge(1),
            "the flag is read only every CHECK_EVERY units"
        );
        assert!(!budget.charge(usize::try_from(CHECK_EVERY).unwrap_or(usize::MAX)));
        assert!(budget.is_spent());
    }

    #[test]
    fn a_past_deadline_spends_the_budget() {
        let budget = ParseBudget::with_limit(u64::MAX).with_deadline(Instant::now());
        assert!(!budget.check());
    }
}
