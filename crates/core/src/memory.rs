//! The process-wide budget of buffered payload: partial frames being received, members'
//! outbound queues, history replays, debug-me sessions and downloads all reserve from one
//! budget, so that many clients together cannot take the server's memory. A reservation that
//! does not fit is refused; the consumer that asked refuses or closes its peer with a reason,
//! and the server goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget: at most `max` bytes of payload buffered at once, over all connections.
#[derive(Debug)]
pub struct MemoryBudget {
    max: usize,
    used: AtomicUsize,
}

/// A reservation would take the budget past its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server memory budget exhausted ({wanted} bytes wanted, {used} of {max} in use)")]
pub struct OverBudget {
    /// Bytes asked for.
    pub wanted: usize,
    /// Bytes in use when asked.
    pub used: usize,
    /// The budget.
    pub max: usize,
}

/// Bytes held from the budget; dropping it gives them back.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget's size.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow as payload arrives.
    pub fn empty(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            bytes: 0,
        }
    }

    /// Reserves `bytes`, or refuses if they do not fit.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, OverBudget> {
        let mut reservation = self.empty();
        reservation.grow(bytes)?;
        Ok(reservation)
    }

    fn take(&self, wanted: usize) -> Result<(), OverBudget> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |used| {
                used.checked_add(wanted).filter(|&total| total <= self.max)
            })
            .map(drop)
            .map_err(|used| OverBudget {
                wanted,
                used,
                max: self.max,
            })
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes too, or refuses (holding what it held) if they do not fit.
    pub fn grow(&mut self, more: usize) -> Result<(), OverBudget> {
        self.budget.take(more)?;
        self.bytes += more;
        Ok(())
    }

    /// Gives `fewer` bytes back (at most what is held).
    pub fn shrink(&mut self, fewer: usize) {
        let fewer = fewer.min(self.bytes);
        self.budget.used.fetch_sub(fewer, Ordering::AcqRel);
        self.bytes -= fewer;
    }

    /// Holds exactly `bytes`: grows or shrinks to it.
    pub fn resize(&mut self, bytes: usize) -> Result<(), OverBudget> {
        if bytes > self.bytes {
            self.grow(bytes - self.bytes)
        } else {
            self.shrink(self.bytes - bytes);
            Ok(())
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.shrink(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_budget_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.reserve(60).unwrap();
        let refused = budget.reserve(41).unwrap_err();
        assert_eq!((refused.wanted, refused.used, refused.max), (41, 60, 100));
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(a.grow(1).is_err());
        assert_eq!(a.bytes(), 60);
        a.shrink(10);
        drop(b);
        assert_eq!(budget.used(), 50);
        a.resize(90).unwrap();
        assert_eq!(budget.used(), 90);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_huge_request_is_refused_without_overflow() {
        let budget = MemoryBudget::new(100);
        let _held = budget.reserve(10).unwrap();
        assert!(budget.reserve(usize::MAX).is_err());
        assert_eq!(budget.used(), 10);
    }
}
