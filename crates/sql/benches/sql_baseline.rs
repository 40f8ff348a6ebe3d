//! Placeholder until the baseline bench lands.
fn main() {}
