//! What any client can send, checked as the handlers check it: decoded
//! from arbitrary bytes (as the transport would), and built from arbitrary
//! field values. Each gives a request to act on or INVALID_ARGUMENT naming
//! the field at fault; none panics (a panic used to cancel a Reserve and
//! leave it queued).

use proptest::prelude::*;
use prost::Message;
use sentinel_api::pb;

use super::{MAX_TEXT, admission::ask, service};

/// The field an error names first: every refusal starts with one.
fn names_a_field(status: &tonic::Status, fields: &[&str]) -> bool {
    status.code() == tonic::Code::InvalidArgument
        && fields.iter().any(|f| status.message().starts_with(f))
}

const RESERVE_FIELDS: &[&str] = &[
    "bytes",
    "priority",
    "scope",
    "wait_seconds",
    "ttl_seconds",
    "holder",
];
const PROCESS_FIELDS: &[&str] = &[
    "limit",
    "sort",
    "page_token",
    "cgroup_prefix",
    "comm",
    "rule",
];
const DECISION_FIELDS: &[&str] = &["limit", "kind", "rule", "action"];

fn check_reserve(r: &pb::ReserveRequest) -> Result<(), TestCaseError> {
    match ask(r, Some(1000)) {
        Ok(a) => {
            prop_assert!(a.bytes > 0);
            prop_assert!(a.wait_secs.is_finite() && (0.0..=86_400.0).contains(&a.wait_secs));
            prop_assert!(a.ttl_secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&a.ttl_secs));
            prop_assert!(a.holder.len() <= MAX_TEXT);
        }
        Err(e) => prop_assert!(names_a_field(&e, RESERVE_FIELDS), "{e:?}"),
    }
    Ok(())
}

fn check_processes(r: pb::ListProcessesRequest) -> Result<(), TestCaseError> {
    match service::query(r) {
        Ok(q) => prop_assert!(q.limit <= super::MAX_LIST as usize),
        Err(e) => prop_assert!(names_a_field(&e, PROCESS_FIELDS), "{e:?}"),
    }
    Ok(())
}

fn check_decisions(r: &pb::ListDecisionsRequest) -> Result<(), TestCaseError> {
    match service::decisions_limit(r) {
        Ok(n) => prop_assert!(n <= super::MAX_LIST as usize),
        Err(e) => prop_assert!(names_a_field(&e, DECISION_FIELDS), "{e:?}"),
    }
    Ok(())
}

/// Text of any length around the bound, of any characters.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,16}",
        (0usize..3).prop_map(|k| "x".repeat(MAX_TEXT - 1 + k)),
        Just("normal".to_string()),
        Just("critical".to_string()),
        Just("cgroup".to_string()),
        Just("rss".to_string()),
    ]
}

fn seconds() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(1e300),
        Just(-0.0),
        0.0..1e6,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_bytes_as_a_request_are_checked_without_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        if let Ok(r) = pb::ReserveRequest::decode(&bytes[..]) {
            check_reserve(&r)?;
        }
        if let Ok(r) = pb::ListProcessesRequest::decode(&bytes[..]) {
            check_processes(r)?;
        }
        if let Ok(r) = pb::ListDecisionsRequest::decode(&bytes[..]) {
            check_decisions(&r)?;
        }
    }

    #[test]
    fn any_reserve_fields_are_a_bounded_ask_or_name_the_field(
        bytes in any::<u64>(),
        wait in seconds(),
        ttl in seconds(),
        priority in text(),
        scope in text(),
        holder in text(),
    ) {
        check_reserve(&pb::ReserveRequest {
            bytes,
            pid: 0,
            scope,
            priority,
            holder,
            wait_seconds: wait,
            ttl_seconds: ttl,
        })?;
    }

    #[test]
    fn any_listing_filters_are_a_bounded_query_or_name_the_field(
        limit in any::<u32>(),
        sort in text(),
        page_token in prop_oneof![text(), any::<u64>().prop_map(|n| n.to_string())],
        comm in text(),
        rule in text(),
        kind in text(),
    ) {
        check_processes(pb::ListProcessesRequest {
            limit,
            sort,
            page_token,
            comm: comm.clone(),
            rule: rule.clone(),
            ..Default::default()
        })?;
        check_decisions(&pb::ListDecisionsRequest {
            limit,
            kind,
            rule,
            action: comm,
            ..Default::default()
        })?;
    }
}
