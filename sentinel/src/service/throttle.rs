//! Refusals journalled at a bounded rate per client. Anyone who can reach
//! the socket can be refused as fast as they can ask (2,000 journalled
//! denials in 1.5 s, measured), and each refusal journalled one by one
//! would push the decisions that matter out of the journal's retention and
//! page someone each time. So each client gets [`BURST`] refusals a
//! window (`api.refusal_window`, a minute by default) journalled as they
//! come; the rest of the window's are counted and journalled as one
//! summary when it ends.

use std::collections::HashMap;

/// Refusals of one client journalled one by one per window.
pub const BURST: u32 = 10;

/// Refusals held back from one client in one window, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<T> {
    /// The client's uid, when the kernel said (over TCP it cannot).
    pub uid: Option<u32>,
    pub held: u32,
    /// From the window's first refusal to the summary.
    pub span_secs: f64,
    /// The last refusal held back, as it would have been journalled.
    pub last: T,
}

impl<T> Summary<T> {
    /// What the summary's journal entry says.
    pub fn reason(&self, last_reason: &str) -> String {
        let who = match self.uid {
            Some(u) => format!("uid {u}"),
            None => "a client of unknown uid".into(),
        };
        format!(
            "{who}: {} more refusals in {:.0} s not journalled one by one (at most {BURST} a window are); the last: {last_reason}",
            self.held, self.span_secs
        )
    }
}

struct Window<T> {
    start: f64,
    journalled: u32,
    held: u32,
    last: Option<T>,
}

pub struct Throttle<T> {
    /// Seconds.
    window: f64,
    clients: HashMap<Option<u32>, Window<T>>,
}

impl<T> Throttle<T> {
    pub fn new(window_secs: f64) -> Self {
        Self {
            window: window_secs,
            clients: HashMap::new(),
        }
    }

    /// A refusal of `uid`'s at `now`: handed back to be journalled now, or
    /// held (counted, and kept if it is the last) for the window's summary.
    pub fn pass(&mut self, uid: Option<u32>, now: f64, refusal: T) -> Option<T> {
        let w = self.clients.entry(uid).or_insert(Window {
            start: now,
            journalled: 0,
            held: 0,
            last: None,
        });
        if now - w.start >= self.window && w.held == 0 {
            // A quiet client's old window: start afresh.
            *w = Window {
                start: now,
                journalled: 0,
                held: 0,
                last: None,
            };
        }
        if w.journalled < BURST && w.held == 0 {
            w.journalled += 1;
            return Some(refusal);
        }
        w.held += 1;
        w.last = Some(refusal);
        None
    }

    /// Summaries of the windows that have ended by `now`, each once.
    pub fn due(&mut self, now: f64) -> Vec<Summary<T>> {
        let ended: Vec<Option<u32>> = self
            .clients
            .iter()
            .filter(|(_, w)| now - w.start >= self.window)
            .map(|(k, _)| *k)
            .collect();
        ended
            .into_iter()
            .filter_map(|uid| {
                let w = self.clients.remove(&uid)?;
                Some(Summary {
                    uid,
                    held: w.held,
                    span_secs: now - w.start,
                    last: w.last?,
                })
            })
            .collect()
    }

    /// Whether any window is open (the tick may skip `due` otherwise).
    pub fn is_idle(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_is_journalled_as_a_burst_and_one_summary_a_window() {
        let mut t = Throttle::new(60.0);
        let mut journalled = 0;
        for i in 0..2000 {
            if t.pass(Some(1000), i as f64 * 0.001, i).is_some() {
                journalled += 1;
            }
        }
        assert_eq!(journalled, BURST);
        assert!(t.due(59.0).is_empty(), "not before the window ends");
        let s = t.due(60.0);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].uid, s[0].held, s[0].last),
            (Some(1000), 2000 - BURST, 1999)
        );
        let why = s[0].reason("too large");
        assert!(
            why.starts_with("uid 1000: 1990 more refusals in 60 s"),
            "{why}"
        );
        assert!(why.ends_with("the last: too large"), "{why}");
        assert!(t.due(200.0).is_empty(), "each summary once");
        assert!(t.is_idle());
        // The next window journals a burst again.
        assert_eq!(t.pass(Some(1000), 300.0, 0), Some(0));
    }

    #[test]
    fn clients_are_counted_apart_and_a_quiet_one_is_never_summarised() {
        let mut t = Throttle::new(60.0);
        for i in 0..BURST + 5 {
            t.pass(Some(1), f64::from(i), i);
        }
        // Another client's refusals are journalled while the first is held.
        assert_eq!(t.pass(Some(2), 20.0, 100), Some(100));
        assert_eq!(t.pass(None, 20.0, 200), Some(200));
        let s = t.due(61.0);
        assert_eq!(s.len(), 1, "only the client with refusals held back");
        assert_eq!((s[0].uid, s[0].held), (Some(1), 5));
        // A client that stayed within its burst restarts its window after
        // it, without a summary.
        for i in 0..BURST {
            assert!(t.pass(Some(2), 100.0 + f64::from(i), i).is_some());
        }
    }

    #[test]
    fn a_refusal_after_the_window_but_before_its_summary_is_not_lost() {
        let mut t = Throttle::new(60.0);
        for i in 0..=BURST {
            t.pass(Some(1), 0.0, i);
        }
        // Past the window, the summary not yet taken: still held.
        assert_eq!(t.pass(Some(1), 70.0, 99), None);
        let s = t.due(70.0);
        assert_eq!((s[0].held, s[0].last), (2, 99));
    }
}
