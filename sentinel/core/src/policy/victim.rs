//! Choosing whom to stop when a shared limit (a cgroup's, the host's) is
//! about to be crossed: the process driving the growth, not the biggest.

/// What victim selection knows about one process (or one process tree,
/// when a tree splits its growth across children and is judged as one).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub pid: u32,
    /// Charged bytes now.
    pub bytes: u64,
    /// Bytes gained over the recent window (negative when shrinking).
    pub gained: i64,
    /// Robust slope in bytes per second, 0 when not growing now.
    pub slope: f64,
    /// Lower is more expendable; ties in growth go to the lower class.
    pub priority: i32,
    /// Never touched, not even frozen (pid 1, kernel threads, the agent,
    /// oom_score_adj -1000, configured names).
    pub protected: bool,
}

/// Each candidate's share of the group's recent growth, in 0..=1. Shrinking
/// or flat members have no share.
pub fn growth_shares(cands: &[Candidate]) -> Vec<f64> {
    let total: f64 = cands.iter().map(|c| c.gained.max(0) as f64).sum();
    cands
        .iter()
        .map(|c| {
            if total <= 0.0 {
                0.0
            } else {
                c.gained.max(0) as f64 / total
            }
        })
        .collect()
}

/// The candidate to stop: among those growing now (an ongoing slope),
/// the largest share of the recent growth (bytes gained), then the steepest
/// slope, then the lower priority class. A burst that has ended is not
/// driving the growth, however much it gained in the window; it is chosen
/// only when nobody grows now and `ended_bursts` allows it (stopping it
/// must free memory, i.e. a kill: freezing what no longer grows helps
/// nobody). A group where nothing grew has no victim: size alone never
/// makes one. Protected candidates are skipped.
pub fn choose_victim(cands: &[Candidate], ended_bursts: bool) -> Option<usize> {
    let shares = growth_shares(cands);
    let best = |eligible: &dyn Fn(usize) -> bool| {
        (0..cands.len())
            .filter(|&i| !cands[i].protected && eligible(i))
            .max_by(|&a, &b| {
                // Shares within a point of each other count as a tie, so
                // that the slope and then the priority class decide.
                let (sa, sb) = ((shares[a] * 100.0).round(), (shares[b] * 100.0).round());
                sa.total_cmp(&sb)
                    .then(cands[a].slope.total_cmp(&cands[b].slope))
                    .then(cands[b].priority.cmp(&cands[a].priority))
            })
    };
    best(&|i| cands[i].slope > 0.0).or_else(|| {
        if ended_bursts {
            best(&|i| shares[i] > 0.0)
        } else {
            None
        }
    })
}

/// Merges a process tree's members into one candidate named by its root, so
/// that a leaker which forks its growth across many children is seen as one
/// grower. `members` are (candidate, root pid) pairs.
pub fn group_by_root(members: &[(Candidate, u32)]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for (c, root) in members {
        match out.iter_mut().find(|g| g.pid == *root) {
            Some(g) => {
                g.bytes += c.bytes;
                g.gained += c.gained;
                g.slope += c.slope.max(0.0);
                g.protected |= c.protected;
                g.priority = g.priority.min(c.priority);
            }
            None => out.push(Candidate {
                pid: *root,
                slope: c.slope.max(0.0),
                ..c.clone()
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn c(pid: u32, bytes: u64, gained: i64, slope: f64) -> Candidate {
        Candidate {
            pid,
            bytes,
            gained,
            slope,
            priority: 0,
            protected: false,
        }
    }

    #[test]
    fn the_grower_is_chosen_not_the_biggest() {
        let cands = [
            c(1, 600 * MIB, 0, 0.0),                  // big and steady
            c(2, 200 * MIB, 180 * MIB as i64, 200e6), // the leaker
            c(3, 50 * MIB, 2 * MIB as i64, 1e6),      // a little noise
        ];
        assert_eq!(choose_victim(&cands, true), Some(1));
    }

    #[test]
    fn an_ended_burst_is_not_chosen_over_an_ongoing_leak() {
        let cands = [
            c(1, 600 * MIB, 600 * MIB as i64, 0.0),   // grew, now flat
            c(2, 150 * MIB, 150 * MIB as i64, 200e6), // growing now
        ];
        assert_eq!(choose_victim(&cands, true), Some(1));
        // With nobody growing now, the recent gain still names one when
        // stopping it frees memory (a kill), and nobody otherwise.
        assert_eq!(choose_victim(&cands[..1], true), Some(0));
        assert_eq!(choose_victim(&cands[..1], false), None);
    }

    #[test]
    fn nobody_grows_nobody_is_chosen() {
        let cands = [c(1, 900 * MIB, 0, 0.0), c(2, 100 * MIB, -5, 0.0)];
        assert_eq!(choose_victim(&cands, true), None);
    }

    #[test]
    fn protected_growers_are_skipped() {
        let mut sshd = c(1, 10 * MIB, 100 * MIB as i64, 100e6);
        sshd.protected = true;
        let cands = [sshd, c(2, 10 * MIB, 10 * MIB as i64, 10e6)];
        assert_eq!(choose_victim(&cands, true), Some(1));
        assert_eq!(choose_victim(&cands[..1], true), None);
    }

    #[test]
    fn equal_growth_goes_to_the_lower_priority_class() {
        let mut batch = c(1, 100 * MIB, 50 * MIB as i64, 50e6);
        batch.priority = -10;
        let mut web = c(2, 100 * MIB, 50 * MIB as i64, 50e6);
        web.priority = 10;
        assert_eq!(choose_victim(&[web.clone(), batch.clone()], true), Some(1));
        assert_eq!(choose_victim(&[batch, web], true), Some(0));
    }

    #[test]
    fn a_tree_that_splits_its_growth_is_one_grower() {
        // Ten children of pid 50 grow 20 MiB each; pid 7 alone grows 60 MiB.
        let mut members: Vec<(Candidate, u32)> = (0..10)
            .map(|i| (c(100 + i, 30 * MIB, 20 * MIB as i64, 20e6), 50))
            .collect();
        members.push((c(7, 100 * MIB, 60 * MIB as i64, 60e6), 7));
        // Judged one by one, the single process looks like the grower...
        let flat: Vec<Candidate> = members.iter().map(|(c, _)| c.clone()).collect();
        assert_eq!(flat[choose_victim(&flat, true).unwrap()].pid, 7);
        // ...grouped, the tree is: 200 MiB of growth against 60.
        let grouped = group_by_root(&members);
        assert_eq!(grouped.len(), 2);
        let v = &grouped[choose_victim(&grouped, true).unwrap()];
        assert_eq!(v.pid, 50);
        assert_eq!(v.gained, 200 * MIB as i64);
    }

    #[test]
    fn shares_sum_to_one_over_growers() {
        let cands = [c(1, 0, 30, 0.0), c(2, 0, 10, 0.0), c(3, 0, -50, 0.0)];
        let s = growth_shares(&cands);
        assert!((s[0] - 0.75).abs() < 1e-12 && (s[1] - 0.25).abs() < 1e-12 && s[2] == 0.0);
    }
}
