//! A circuit breaker per receiver: after `failures` failures within
//! `window` it opens and nothing is tried; after `open_for` one delivery
//! is let through (half-open); success closes it, failure opens it again.
//! Time is passed in, so the states are tested without waiting.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }

    /// For the metric: 0 closed, 1 open, 2 half-open.
    pub fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    failures: usize,
    window: f64,
    open_for: f64,
    recent: VecDeque<f64>,
    /// When open: since when.
    opened_at: Option<f64>,
    /// Times it opened, for the metric.
    pub opened: u64,
}

impl Breaker {
    pub fn new(failures: usize, window_secs: f64, open_secs: f64) -> Self {
        Self {
            failures,
            window: window_secs,
            open_for: open_secs,
            recent: VecDeque::new(),
            opened_at: None,
            opened: 0,
        }
    }

    pub fn state(&self, now: f64) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(t) if now - t < self.open_for => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a delivery may be tried now.
    pub fn allows(&self, now: f64) -> bool {
        self.state(now) != BreakerState::Open
    }

    /// Seconds until a delivery may be tried.
    pub fn wait(&self, now: f64) -> f64 {
        match self.opened_at {
            Some(t) => (t + self.open_for - now).max(0.0),
            None => 0.0,
        }
    }

    pub fn success(&mut self) {
        self.recent.clear();
        self.opened_at = None;
    }

    pub fn failure(&mut self, now: f64) {
        if self.opened_at.is_some() {
            // The half-open trial failed: open for another period.
            self.opened_at = Some(now);
            self.opened += 1;
            return;
        }
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|&t| now - t > self.window) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.failures {
            self.recent.clear();
            self.opened_at = Some(now);
            self.opened += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn opens_after_three_failures_in_a_minute_half_opens_and_closes_on_success() {
        let mut b = Breaker::new(3, 60.0, 30.0);
        b.failure(0.0);
        b.failure(10.0);
        assert_eq!(b.state(10.0), BreakerState::Closed);
        b.failure(20.0);
        assert_eq!(b.state(20.0), BreakerState::Open);
        assert!(!b.allows(49.0));
        assert_eq!(b.wait(40.0), 10.0);
        assert_eq!(b.state(50.0), BreakerState::HalfOpen);
        // The trial fails: open again for a full period.
        b.failure(50.0);
        assert_eq!(b.state(79.0), BreakerState::Open);
        assert_eq!(b.state(80.0), BreakerState::HalfOpen);
        b.success();
        assert_eq!(b.state(80.0), BreakerState::Closed);
        assert_eq!(b.opened, 2);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_open_it() {
        let mut b = Breaker::new(3, 60.0, 30.0);
        for t in [0.0, 40.0, 80.0, 120.0, 160.0] {
            b.failure(t);
            assert_eq!(b.state(t), BreakerState::Closed, "at {t}");
        }
    }

    proptest! {
        /// Whatever the failures, a success closes it, and it is open only
        /// after `failures` of them.
        #[test]
        fn success_always_closes(times in proptest::collection::vec(0.0f64..1000.0, 0..20)) {
            let mut times = times;
            times.sort_by(f64::total_cmp);
            let mut b = Breaker::new(3, 60.0, 30.0);
            for (i, &t) in times.iter().enumerate() {
                b.failure(t);
                if i < 2 {
                    prop_assert_eq!(b.state(t), BreakerState::Closed);
                }
            }
            b.success();
            prop_assert_eq!(b.state(2000.0), BreakerState::Closed);
        }
    }
}
