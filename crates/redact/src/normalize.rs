//! The normalised view detectors also run on lives in core
//! ([`agent_audit_core::normalize`]), shared with the model client's key
//! scrubber so that both see through the same encodings and look-alikes.

pub(crate) use agent_audit_core::normalize::{fold_str, view};
