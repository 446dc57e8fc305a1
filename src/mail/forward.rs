//! Forwarding a message unchanged but for a loop marker (`X-Loop: <address>`).

/// `raw` with an `X-Loop: <marker>` line put first, or `None` when its header already
/// carries that line (it went round once: it is not sent again).
pub fn with_loop_marker(raw: &[u8], marker: &str) -> Option<Vec<u8>> {
    let line = loop_line(marker);
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    if String::from_utf8_lossy(&raw[..head_end])
        .to_ascii_lowercase()
        .contains(&line.to_ascii_lowercase())
    {
        return None;
    }
    let mut message = format!("{line}\r\n").into_bytes();
    message.extend_from_slice(raw);
    Some(message)
}

/// The marker line for `marker`, without its line ending.
pub fn loop_line(marker: &str) -> String {
    format!("X-Loop: {marker}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_once_and_stops_the_second_time() {
        let raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody X-Loop: dev-owner@x\r\n";
        let once = with_loop_marker(raw, "dev-owner@x").expect("not yet marked");
        assert!(once.starts_with(b"X-Loop: dev-owner@x\r\nFrom: a@example.org"));
        assert_eq!(with_loop_marker(&once, "DEV-OWNER@X"), None);
        // a marker in the body does not count, nor another list's
        assert!(with_loop_marker(raw, "other-owner@x").is_some());
    }
}
