//! A bounded series of (time, bytes) samples with a robust slope.
//!
//! Samples arrive irregularly: the kernel reports a process only when it
//! moved by a step, so a fast grower yields dense samples and a quiet one
//! none at all. The slope is Theil–Sen (median of pairwise slopes) over the
//! newest samples, which one outlier cannot swing; whether growth is still
//! going on *now* is judged separately from how stale the newest sample is
//! relative to the recent sample spacing, so that a burst that stopped is not
//! extrapolated forever.

use std::collections::VecDeque;

/// Samples used for the slope; Theil–Sen is quadratic in this.
const SLOPE_SAMPLES: usize = 16;
/// Hard bound on stored samples per process.
const MAX_SAMPLES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds on a monotonic clock.
    pub t: f64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Robust growth rate; negative when shrinking.
    pub bytes_per_sec: f64,
    /// Share of consecutive steps that moved in the slope's direction (0..1).
    pub confidence: f64,
    /// Whether the growth is still going on now (the newest sample is not
    /// stale compared with the spacing of the ones before it).
    pub ongoing: bool,
    pub samples: usize,
    /// Seconds covered by the samples used.
    pub span: f64,
    /// Median spacing of those samples: how soon the next one is due.
    pub typical_gap: f64,
}

#[derive(Debug, Clone)]
pub struct Series {
    samples: VecDeque<Sample>,
    history: f64,
}

impl Series {
    pub fn new(history_secs: f64) -> Self {
        Self {
            samples: VecDeque::new(),
            history: history_secs,
        }
    }

    pub fn push(&mut self, t: f64, bytes: u64) {
        if let Some(last) = self.samples.back_mut() {
            if t < last.t {
                return; // out of order: keep the series monotonic in time
            }
            if t == last.t {
                last.bytes = bytes;
                return;
            }
        }
        self.samples.push_back(Sample { t, bytes });
        while self.samples.len() > MAX_SAMPLES
            || self
                .samples
                .front()
                .is_some_and(|s| t - s.t > self.history && self.samples.len() > 2)
        {
            self.samples.pop_front();
        }
    }

    pub fn last(&self) -> Option<Sample> {
        self.samples.back().copied()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The trend as of `now`; `None` with fewer than three samples.
    pub fn trend(&self, now: f64) -> Option<Trend> {
        let n = self.samples.len();
        if n < 3 {
            return None;
        }
        let recent: Vec<Sample> = self
            .samples
            .iter()
            .skip(n.saturating_sub(SLOPE_SAMPLES))
            .copied()
            .collect();
        let mut slopes = Vec::with_capacity(recent.len() * recent.len() / 2);
        for i in 0..recent.len() {
            for j in i + 1..recent.len() {
                let dt = recent[j].t - recent[i].t;
                if dt > 0.0 {
                    slopes.push((recent[j].bytes as f64 - recent[i].bytes as f64) / dt);
                }
            }
        }
        if slopes.is_empty() {
            return None;
        }
        let slope = median(&mut slopes);

        let mut gaps: Vec<f64> = recent.windows(2).map(|w| w[1].t - w[0].t).collect();
        let typical_gap = median(&mut gaps);
        let along = recent
            .windows(2)
            .filter(|w| {
                let d = w[1].bytes as f64 - w[0].bytes as f64;
                (slope > 0.0 && d > 0.0) || (slope < 0.0 && d < 0.0) || (slope == 0.0 && d == 0.0)
            })
            .count();
        let last = recent[recent.len() - 1];
        let first = recent[0];
        // A grower produces samples at its own pace; three of its typical
        // gaps without one means it has stopped (or slowed right down).
        let stale_after = (3.0 * typical_gap).max(0.05);
        Some(Trend {
            bytes_per_sec: slope,
            confidence: along as f64 / (recent.len() - 1) as f64,
            ongoing: now - last.t <= stale_after,
            samples: recent.len(),
            span: last.t - first.t,
            typical_gap,
        })
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn linear(rate: f64, dt: f64, n: usize) -> Series {
        let mut s = Series::new(60.0);
        for i in 0..n {
            let t = i as f64 * dt;
            s.push(t, (1e8 + rate * t) as u64);
        }
        s
    }

    #[test]
    fn linear_leak_slope_is_its_rate() {
        let s = linear(200e6, 0.005, 40);
        let t = s.trend(s.last().unwrap().t).unwrap();
        assert!((t.bytes_per_sec - 200e6).abs() < 1e6, "{t:?}");
        assert!(t.ongoing);
        assert!(t.confidence > 0.95);
    }

    #[test]
    fn a_burst_that_stopped_is_not_ongoing() {
        let s = linear(2e9, 0.001, 50);
        let end = s.last().unwrap().t;
        assert!(s.trend(end).unwrap().ongoing);
        assert!(!s.trend(end + 0.5).unwrap().ongoing);
    }

    #[test]
    fn steady_state_has_no_slope() {
        let mut s = Series::new(60.0);
        for i in 0..20 {
            s.push(i as f64 * 0.1, 300 << 20);
        }
        let t = s.trend(2.0).unwrap();
        assert_eq!(t.bytes_per_sec, 0.0);
    }

    #[test]
    fn one_outlier_does_not_swing_the_slope() {
        let mut s = linear(1e6, 0.1, 15);
        let t = s.last().unwrap().t + 0.1;
        s.push(t, 10 << 30); // a wild spike
        let tr = s.trend(t).unwrap();
        assert!((tr.bytes_per_sec - 1e6).abs() < 0.2e6, "{tr:?}");
    }

    #[test]
    fn history_is_bounded() {
        let s = linear(1.0, 0.01, 10_000);
        assert!(s.len() <= MAX_SAMPLES);
        let mut s = Series::new(1.0);
        for i in 0..100 {
            s.push(i as f64 * 0.1, i);
        }
        assert!(s.samples().next().unwrap().t >= 8.9);
    }

    #[test]
    fn out_of_order_samples_are_dropped() {
        let mut s = Series::new(10.0);
        s.push(1.0, 10);
        s.push(0.5, 99);
        s.push(1.0, 20);
        assert_eq!(s.len(), 1);
        assert_eq!(s.last().unwrap().bytes, 20);
    }

    proptest! {
        #[test]
        fn slope_matches_any_linear_rate(rate in -1e9f64..1e9, dt in 0.0005f64..1.0, n in 3usize..60) {
            let mut s = Series::new(1e9);
            for i in 0..n {
                let t = i as f64 * dt;
                s.push(t, (1e11 + rate * t) as u64);
            }
            let tr = s.trend(s.last().unwrap().t).unwrap();
            // integer truncation of the samples allows ~1 byte per sample
            prop_assert!((tr.bytes_per_sec - rate).abs() <= 2.0 / dt + rate.abs() * 1e-9);
        }

        #[test]
        fn monotonic_growth_has_positive_slope(steps in proptest::collection::vec(1u64..1_000_000, 3..40)) {
            let mut s = Series::new(1e9);
            let mut b = 0u64;
            for (i, d) in steps.iter().enumerate() {
                b += d;
                s.push(i as f64 * 0.01, b);
            }
            let tr = s.trend(s.last().unwrap().t).unwrap();
            prop_assert!(tr.bytes_per_sec > 0.0);
            prop_assert!((tr.confidence - 1.0).abs() < 1e-9);
        }
    }
}
