//! A failed model call's `status` and `kind`, read from rig's error text.

/// The first HTTP error status (400..=599) named in `text`, if any.
pub(crate) fn status_in(text: &str) -> Option<u16> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(2)).find_map(|i| {
        let window = bytes.get(i..i + 3)?;
        let before = i.checked_sub(1).and_then(|j| bytes.get(j));
        let after = bytes.get(i + 3);
        let digit = |b: Option<&u8>| b.is_some_and(u8::is_ascii_digit);
        if window.iter().all(u8::is_ascii_digit) && !digit(before) && !digit(after) {
            let n: u16 = std::str::from_utf8(window).ok()?.parse().ok()?;
            (400..=599).contains(&n).then_some(n)
        } else {
            None
        }
    })
}

/// agent-audit's model error kinds, from the status.
pub(crate) fn kind_of(status: Option<u16>) -> &'static str {
    match status {
        Some(401 | 403) => "auth",
        Some(408 | 504) => "timeout",
        Some(413) => "too_large",
        Some(429) => "rate_limit",
        Some(500..=599) => "server",
        _ => "http",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_found_only_as_a_three_digit_error_code() {
        assert_eq!(status_in("HTTP status 500 Internal"), Some(500));
        assert_eq!(status_in("code 1500 and 200"), None);
        assert_eq!(status_in("429"), Some(429));
        assert_eq!(kind_of(Some(503)), "server");
        assert_eq!(kind_of(None), "http");
    }
}
