//! Waiting for the agent's decisions, by polling or on a stream.

use std::time::{Duration, Instant};

use crate::{Agent, pb};

impl Agent {
    /// Polls ListDecisions until one matches `pred` or `within` passes.
    pub async fn wait_decision(
        &self,
        within: Duration,
        pred: impl Fn(&pb::Decision) -> bool,
    ) -> Option<pb::Decision> {
        let mut c = self.client().await;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let r = c
                .list_decisions(pb::ListDecisionsRequest {
                    after_seq: 0,
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .expect("ListDecisions")
                .into_inner();
            if let Some(d) = r.decisions.into_iter().find(|d| pred(d)) {
                return Some(d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// `wait_decision` that fails the test, with the agent's log, when no
    /// decision for `pid` comes within `within`.
    pub async fn expect_decision_for(&self, pid: u32, within: Duration) -> pb::Decision {
        match self.wait_decision(within, |d| d.pid == pid).await {
            Some(d) => d,
            None => panic!("no decision for pid {pid}\n{}", self.log_text()),
        }
    }

    /// The first decision taking `action` on `pid`, or a failed test.
    pub async fn expect_action(&self, pid: u32, action: &str, within: Duration) -> pb::Decision {
        match self
            .wait_decision(within, |d| d.pid == pid && d.action == action)
            .await
        {
            Some(d) => d,
            None => panic!("no `{action}` decision for pid {pid}\n{}", self.log_text()),
        }
    }

    /// Every kept decision about `pid`, oldest first.
    pub async fn decisions_for(&self, pid: u32) -> Vec<pb::Decision> {
        self.client()
            .await
            .list_decisions(pb::ListDecisionsRequest {
                after_seq: 0,
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("ListDecisions")
            .into_inner()
            .decisions
            .into_iter()
            .filter(|d| d.pid == pid)
            .collect()
    }

    /// Every kept decision of `kind` (and `action`, when not empty),
    /// oldest first.
    pub async fn decisions_of(&self, kind: &str, action: &str) -> Vec<pb::Decision> {
        self.client()
            .await
            .list_decisions(pb::ListDecisionsRequest {
                kind: kind.into(),
                action: action.into(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("ListDecisions")
            .into_inner()
            .decisions
    }
}

/// Wall-clock milliseconds, as decisions carry them.
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// The next decision on a WatchDecisions stream that `want` accepts,
/// within `within`.
pub async fn next_decision(
    stream: &mut tonic::Streaming<pb::Decision>,
    within: Duration,
    want: impl Fn(&pb::Decision) -> bool,
) -> Option<pb::Decision> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), stream.message()).await {
            Ok(Ok(Some(d))) if want(&d) => return Some(d),
            Ok(Ok(Some(_))) => continue,
            _ => return None,
        }
    }
    None
}
