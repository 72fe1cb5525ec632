//! When each waiting entry is tried next. Plain data, no clock of its own:
//! the worker passes `now`, tests pass made-up instants.

use std::collections::{BTreeMap, HashSet};

use tokio::time::Instant;

use super::store::SpoolId;

/// Entries by due time. An entry is *known* from the moment it is scheduled
/// until it is forgotten, including while an attempt is in flight, so a
/// rescan of the folder never starts a second attempt on the same file.
#[derive(Debug, Default)]
pub struct Schedule {
    due: BTreeMap<(Instant, u64), SpoolId>,
    known: HashSet<SpoolId>,
    /// Breaks ties between equal instants, first come first served.
    sequence: u64,
}

impl Schedule {
    /// Schedules an entry not yet known; `false` if it already is.
    pub fn insert(&mut self, id: SpoolId, at: Instant) -> bool {
        if !self.known.insert(id.clone()) {
            return false;
        }
        self.push(id, at);
        true
    }

    /// Schedules again an entry whose attempt just finished.
    pub fn retry(&mut self, id: SpoolId, at: Instant) {
        self.known.insert(id.clone());
        self.push(id, at);
    }

    /// The earliest entry due at `now`; it stays known (in flight).
    pub fn pop_due(&mut self, now: Instant) -> Option<SpoolId> {
        let entry = self.due.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// When the next entry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// The entry is done with (delivered, dead, gone).
    pub fn forget(&mut self, id: &SpoolId) {
        self.known.remove(id);
    }

    pub fn is_known(&self, id: &SpoolId) -> bool {
        self.known.contains(id)
    }

    fn push(&mut self, id: SpoolId, at: Instant) {
        self.sequence += 1;
        self.due.insert((at, self.sequence), id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u8) -> SpoolId {
        SpoolId::for_tests(&format!("{n:013}-0000000000000000.msg"))
    }

    #[test]
    fn due_entries_come_out_in_time_order() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        assert!(schedule.insert(id(2), now + Duration::from_secs(2)));
        assert!(schedule.insert(id(1), now));
        assert!(schedule.insert(id(3), now));
        assert!(!schedule.insert(id(1), now), "already known");
        assert_eq!(schedule.next_due(), Some(now));
        assert_eq!(schedule.pop_due(now), Some(id(1)));
        assert_eq!(
            schedule.pop_due(now),
            Some(id(3)),
            "ties: first come first served"
        );
        assert_eq!(schedule.pop_due(now), None, "id(2) is not due yet");
        assert_eq!(schedule.next_due(), Some(now + Duration::from_secs(2)));
        assert_eq!(schedule.pop_due(now + Duration::from_secs(5)), Some(id(2)));
        assert_eq!(schedule.next_due(), None);
    }

    #[test]
    fn in_flight_entries_stay_known_until_forgotten() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        schedule.insert(id(1), now);
        assert_eq!(schedule.pop_due(now), Some(id(1)));
        assert!(schedule.is_known(&id(1)));
        assert!(
            !schedule.insert(id(1), now),
            "a rescan must not start it twice"
        );
        schedule.retry(id(1), now + Duration::from_secs(1));
        assert_eq!(schedule.pop_due(now + Duration::from_secs(1)), Some(id(1)));
        schedule.forget(&id(1));
        assert!(!schedule.is_known(&id(1)));
        assert!(schedule.insert(id(1), now));
    }
}
