//! Crash loops: the same command line preempted again and again, because a
//! supervisor restarts it and it grows the same way each time. Stopping it
//! once more helps nobody; an operator must look.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopRule {
    /// Preemptions of one command line, within `window_secs`, that make a
    /// crash loop.
    pub count: usize,
    pub window_secs: f64,
}

impl Default for LoopRule {
    fn default() -> Self {
        Self {
            count: 3,
            window_secs: 600.0,
        }
    }
}

/// A command line seen looping, for status.
#[derive(Debug, Clone, PartialEq)]
pub struct CrashLoop {
    pub cmdline: String,
    /// Preemptions within the window, as of the last one.
    pub count: usize,
    /// Time (the caller's clock) of the last preemption.
    pub last: f64,
}

#[derive(Debug, Default)]
pub struct Restarts {
    rule: LoopRule,
    seen: HashMap<String, VecDeque<f64>>,
}

impl Restarts {
    pub fn new(rule: LoopRule) -> Self {
        Self {
            rule,
            seen: HashMap::new(),
        }
    }

    pub fn set_rule(&mut self, rule: LoopRule) {
        self.rule = rule;
    }

    /// Records a preemption of `cmdline` at `now` and returns how many fell
    /// in the window when that makes a crash loop.
    pub fn record(&mut self, cmdline: &str, now: f64) -> Option<usize> {
        let times = self.seen.entry(cmdline.to_string()).or_default();
        times.push_back(now);
        while times
            .front()
            .is_some_and(|&t| now - t > self.rule.window_secs)
        {
            times.pop_front();
        }
        // Bounded even for a command preempted in a tight loop.
        while times.len() > self.rule.count.max(1) * 4 {
            times.pop_front();
        }
        (times.len() >= self.rule.count).then_some(times.len())
    }

    /// Command lines looping as of `now`, most recent first.
    pub fn looping(&self, now: f64) -> Vec<CrashLoop> {
        let mut v: Vec<CrashLoop> = self
            .seen
            .iter()
            .filter_map(|(cmd, times)| {
                let n = times
                    .iter()
                    .filter(|&&t| now - t <= self.rule.window_secs)
                    .count();
                (n >= self.rule.count).then(|| CrashLoop {
                    cmdline: cmd.clone(),
                    count: n,
                    last: times.back().copied().unwrap_or(now),
                })
            })
            .collect();
        v.sort_by(|a, b| b.last.total_cmp(&a.last));
        v
    }

    /// Forgets command lines with nothing left in the window.
    pub fn prune(&mut self, now: f64) {
        let w = self.rule.window_secs;
        self.seen
            .retain(|_, times| times.back().is_some_and(|&t| now - t <= w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_third_preemption_in_the_window_is_a_loop() {
        let mut r = Restarts::new(LoopRule {
            count: 3,
            window_secs: 60.0,
        });
        assert_eq!(r.record("worker --leak", 0.0), None);
        assert_eq!(r.record("other", 1.0), None);
        assert_eq!(r.record("worker --leak", 10.0), None);
        assert_eq!(r.record("worker --leak", 20.0), Some(3));
        let l = r.looping(21.0);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].cmdline, "worker --leak");
        assert_eq!(l[0].count, 3);
        // Out of the window, it is no longer looping.
        assert!(r.looping(75.0).is_empty());
    }

    #[test]
    fn preemptions_spread_wider_than_the_window_are_not_a_loop() {
        let mut r = Restarts::new(LoopRule {
            count: 3,
            window_secs: 60.0,
        });
        for i in 0..10 {
            assert_eq!(r.record("nightly", i as f64 * 40.0), None, "at {i}");
        }
        r.prune(1000.0);
        assert!(r.seen.is_empty());
    }
}
