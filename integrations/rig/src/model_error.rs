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

/// agent-audit's model error kinds, from the status, else from what rig's
/// text says went wrong (a body that is not the wire format, no answer in
/// time, no connection).
pub(crate) fn kind_of(status: Option<u16>, text: &str) -> &'static str {
    match status {
        Some(401 | 403) => "auth",
        Some(408 | 504) => "timeout",
        Some(413) => "too_large",
        Some(429) => "rate_limit",
        Some(500..=599) => "server",
        Some(_) => "http",
        None => {
            let text = text.to_ascii_lowercase();
            let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
            if has(&[
                "json",
                "deserializ",
                "expected value",
                "missing field",
                "decode",
            ]) {
                "malformed"
            } else if has(&["timed out", "timeout"]) {
                "timeout"
            } else if has(&["connect", "dns", "refused"]) {
                "connect"
            } else {
                "http"
            }
        }
    }
}

/// The most of a model error's text a record keeps: rig puts the server's
/// whole error body in it, and a record larger than `max_record_bytes`
/// would be refused, losing the `model_error` altogether.
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// `text`, cut to [`MAX_MESSAGE_BYTES`] on a character boundary, saying
/// how much was cut.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... [{} more bytes not recorded]",
        &text[..end],
        text.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_found_only_as_a_three_digit_error_code() {
        assert_eq!(status_in("HTTP status 500 Internal"), Some(500));
        assert_eq!(status_in("code 1500 and 200"), None);
        assert_eq!(status_in("429"), Some(429));
        assert_eq!(kind_of(Some(503), ""), "server");
        assert_eq!(kind_of(Some(404), "json"), "http");
        assert_eq!(kind_of(None, "error sending request"), "http");
        assert_eq!(
            kind_of(None, "JsonError: expected value at line 1"),
            "malformed"
        );
        assert_eq!(kind_of(None, "operation timed out"), "timeout");
    }

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(&text);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("[{} more bytes not recorded]", MAX_MESSAGE_BYTES)));
        assert_eq!(bounded("short"), "short");
    }
}
