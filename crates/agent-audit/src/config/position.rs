//! Where a key sits in the configuration text, so that every error names
//! the line an operator has to edit.

/// The bytes of the `[name]` table: from its header line to the next
/// header, or the whole text when it has no header of its own (an inline
/// table), so that [`key_line`] finds a key of that table rather than a
/// key of the same name elsewhere.
#[cfg(any(feature = "jsonl", feature = "agents", feature = "otel"))]
pub(super) fn section(text: &str, name: &str) -> std::ops::Range<usize> {
    let header = format!("[{name}]");
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with('[') {
            if start.is_some() {
                return start.unwrap_or(0)..offset;
            }
            if t.trim_end()
                .split('#')
                .next()
                .is_some_and(|h| h.trim() == header)
            {
                start = Some(offset);
            }
        }
        offset += line.len();
    }
    start.unwrap_or(0)..text.len()
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = offset
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, col)
}

/// The line of `key = ...` inside the table spanning `span`, else the
/// table's first line.
pub(super) fn key_line(text: &str, span: std::ops::Range<usize>, key: &str) -> usize {
    let start = span.start.min(text.len());
    let end = span.end.min(text.len());
    let mut offset = start;
    for line in text[start..end].split_inclusive('\n') {
        let t = line.trim_start();
        let t = t.strip_prefix('"').unwrap_or(t);
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start_matches('"').trim_start().starts_with('=')
        {
            return line_col(text, offset).0;
        }
        offset += line.len();
    }
    line_col(text, start).0
}
