//! `agent-audit stats`' table by user (schema v2's `user_id`): who asked,
//! how much, and how much of it failed. Records without a user (v1
//! records, the dispatcher's own) count under `-`.
//!
//! A log can name millions of users: each user's distinct requests and
//! sessions are counted by a 64-bit hash of the id, not a copy of it, and
//! the text table lists the [`MAX_LISTED`](crate::stats::MAX_LISTED)
//! users with the most records, saying how many more there are.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use agent_audit_core::StoredRecord;
use serde::Serialize;

/// One user's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UserStats {
    /// Records carrying the user.
    pub records: u64,
    /// Distinct requests among them.
    pub requests: u64,
    /// Distinct sessions among them.
    pub sessions: u64,
    /// Error records (`*_error`, `audit_gap`) among them.
    pub errors: u64,
}

#[derive(Default)]
pub(crate) struct UserAcc {
    records: u64,
    /// Hashes of the request ids seen ([`id_hash`]).
    requests: HashSet<u64>,
    /// Hashes of the session ids seen.
    sessions: HashSet<u64>,
    errors: u64,
}

/// A 64-bit hash of an id (`DefaultHasher::new()`, the same keys every
/// time). Two ids of one user colliding would undercount by one; at
/// 2^-64 per pair that is not a concern for a count shown to people.
fn id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// Counts `r` under its user.
pub(crate) fn add(users: &mut BTreeMap<String, UserAcc>, r: &StoredRecord) {
    let key = r.user_id.as_deref().unwrap_or("-");
    let acc = match users.get_mut(key) {
        Some(acc) => acc,
        None => users.entry(key.to_string()).or_default(),
    };
    acc.records += 1;
    if let Some(id) = &r.request_id {
        acc.requests.insert(id_hash(id));
    }
    if let Some(id) = &r.session_id {
        acc.sessions.insert(id_hash(id));
    }
    if r.event_type.is_error() {
        acc.errors += 1;
    }
}

/// The accumulated figures.
pub(crate) fn finish(users: BTreeMap<String, UserAcc>) -> BTreeMap<String, UserStats> {
    users
        .into_iter()
        .map(|(user, a)| {
            let s = UserStats {
                records: a.records,
                requests: a.requests.len() as u64,
                sessions: a.sessions.len() as u64,
                errors: a.errors,
            };
            (user, s)
        })
        .collect()
}

/// The table's rows, most records first, at most `max` of them.
pub(crate) fn rows(users: &BTreeMap<String, UserStats>, max: usize) -> Vec<Vec<String>> {
    let mut sorted: Vec<(&String, &UserStats)> = users.iter().collect();
    sorted.sort_by(|a, b| b.1.records.cmp(&a.1.records).then(a.0.cmp(b.0)));
    sorted
        .into_iter()
        .take(max)
        .map(|(user, s)| {
            vec![
                crate::text::one_line(user),
                s.records.to_string(),
                s.requests.to_string(),
                s.sessions.to_string(),
                s.errors.to_string(),
            ]
        })
        .collect()
}
