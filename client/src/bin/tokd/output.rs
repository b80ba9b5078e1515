//! Formatting for humans: relative times and aligned tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::CmdError;

/// Writes `text` to stdout: every line `tokd` prints goes through here (or [`outln!`]).
///
/// # Errors
/// [`CmdError::Stdout`]; a closed pipe ends the command quietly.
pub fn out(text: &str) -> Result<(), CmdError> {
    crate::helpers::stdout::write(text.as_bytes()).map_err(CmdError::Stdout)
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The last second humantime can format (9999-12-31T23:59:59Z): it fails from year 10000 on.
const LAST_FORMATTABLE_MS: i64 = 253_402_300_799_000;

/// An RFC 3339 timestamp in UTC to the second (`2026-11-24T08:15:00Z`), as Kubernetes
/// writes them. Times outside 1970–9999 (humantime's range; an expiry from the network can
/// be anything) are clamped to its ends rather than panicking.
pub fn rfc3339_utc(ms: i64) -> String {
    let clamped = ms.clamp(0, LAST_FORMATTABLE_MS);
    // Whole milliseconds in 0..=LAST_FORMATTABLE_MS: the conversion and the addition cannot
    // fail, but a fallback costs nothing.
    let at = u64::try_from(clamped)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .unwrap_or(UNIX_EPOCH);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `4m12s`, `2h5m`, `3d4h`: the two most significant units.
pub fn compact(ms: i64) -> String {
    let mut secs = ms.unsigned_abs() / 1000;
    if secs == 0 {
        return "0s".into();
    }
    let units = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let mut out = String::new();
    let mut shown = 0;
    for (name, size) in units {
        if secs >= size || shown > 0 {
            let n = secs / size;
            secs %= size;
            if n > 0 {
                out.push_str(&format!("{n}{name}"));
            }
            shown += 1;
            if shown == 2 {
                break;
            }
        }
    }
    out
}

/// `in 4m12s` or `3m ago` relative to now; `-` for none.
pub fn relative(at_ms: Option<i64>, now: i64) -> String {
    match at_ms {
        None => "-".into(),
        Some(t) if t >= now => format!("in {}", compact(t.saturating_sub(now))),
        Some(t) => format!("{} ago", compact(now.saturating_sub(t))),
    }
}

/// Rows as left-aligned columns separated by two spaces, one line each. On a terminal (and
/// without `NO_COLOR`), `colour(column, cell)` may give an ANSI colour code for a body cell.
pub fn table(rows: &[Vec<String>], colour: fn(usize, &str) -> Option<&'static str>) -> String {
    use std::io::IsTerminal;
    let coloured = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            match colour(i, cell).filter(|_| coloured && r > 0) {
                Some(code) => line.push_str(&format!("\x1b[{code}m{cell}\x1b[0m")),
                None => line.push_str(cell),
            }
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Says once, on stderr, that a session has no refresh token and what that means (not for
/// client-credentials sessions, which need none).
pub fn warn_if_no_refresh_token(s: &tokd_protocol::SessionStatus) {
    if s.has_refresh_token || s.client_credentials {
        return;
    }
    crate::errln!(
        "tokd: note: the provider gave no refresh token, so session {:?} will need a login \
         when its token expires; the usual fix is `offline_access` in the provider's `scope`",
        s.name
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_durations() {
        assert_eq!(compact(0), "0s");
        assert_eq!(compact(59_000), "59s");
        assert_eq!(compact(252_000), "4m12s");
        assert_eq!(compact(3_600_000), "1h");
        assert_eq!(compact(7_500_000), "2h5m");
        assert_eq!(compact(-90_000), "1m30s");
        assert_eq!(relative(Some(10_000), 0), "in 10s");
        assert_eq!(relative(Some(0), 180_000), "3m ago");
        assert_eq!(relative(None, 0), "-");
        // Times a hostile or broken daemon could send do not overflow.
        assert!(relative(Some(i64::MIN), 180_000).ends_with(" ago"));
        assert!(relative(Some(i64::MAX), -180_000).starts_with("in "));
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(999), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(253_402_300_799_999), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn rfc3339_clamps_what_humantime_cannot_format() {
        // humantime panics before the epoch and fails from year 10000 on; an expiry read
        // from a token can be either.
        assert_eq!(rfc3339_utc(-1000), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(i64::MIN), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(253_402_300_800_000), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(i64::MAX), "9999-12-31T23:59:59Z");
    }
}
