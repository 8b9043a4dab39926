//! Request bodies: Alertmanager's API v2 (`POST /api/v2/alerts`, a JSON
//! array of postable alerts) and the generic webhook.

use serde_json::{Value, json};

use super::model::{Alert, rfc3339};

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at_ms),
        "endsAt": rfc3339(a.ends_at_ms),
    })
}

/// Alertmanager reads `endsAt` in the past as resolved.
pub fn alertmanager(alerts: &[Alert]) -> Vec<u8> {
    serde_json::to_vec(&alerts.iter().map(alert_json).collect::<Vec<_>>()).expect("JSON of strings")
}

/// `{"version": "1", "source": "sentinel", "alerts": [{"status": ...}]}`,
/// with the status spelled out for receivers that do not compare times.
pub fn webhook(alerts: &[Alert]) -> Vec<u8> {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let mut v = alert_json(a);
            v["status"] = json!(if a.resolved { "resolved" } else { "firing" });
            v
        })
        .collect();
    serde_json::to_vec(&json!({"version": "1", "source": "sentinel", "alerts": alerts}))
        .expect("JSON of strings")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(resolved: bool) -> Alert {
        Alert {
            labels: [("alertname".to_string(), "SentinelPreempted".to_string())].into(),
            annotations: [("summary".to_string(), "froze \"x\"".to_string())].into(),
            starts_at_ms: 1_000,
            ends_at_ms: 2_000,
            resolved,
        }
    }

    #[test]
    fn alertmanager_gets_an_array_of_postable_alerts() {
        let v: Value = serde_json::from_slice(&alertmanager(&[alert(false)])).unwrap();
        assert_eq!(v[0]["labels"]["alertname"], "SentinelPreempted");
        assert_eq!(v[0]["annotations"]["summary"], "froze \"x\"");
        assert_eq!(v[0]["startsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:00:02.000Z");
        assert!(v[0].get("status").is_none());
    }

    #[test]
    fn webhooks_get_the_status_spelled_out() {
        let v: Value = serde_json::from_slice(&webhook(&[alert(false), alert(true)])).unwrap();
        assert_eq!(v["source"], "sentinel");
        assert_eq!(v["alerts"][0]["status"], "firing");
        assert_eq!(v["alerts"][1]["status"], "resolved");
    }
}
