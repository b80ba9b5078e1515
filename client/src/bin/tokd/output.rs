//! Formatting for humans: relative times and aligned tables.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An RFC 3339 timestamp in UTC to the second (`2026-11-24T08:15:00Z`), as Kubernetes
/// writes them.
pub fn rfc3339_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: proleptic Gregorian calendar, days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
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
        Some(t) if t >= now => format!("in {}", compact(t - now)),
        Some(t) => format!("{} ago", compact(now - t)),
    }
}

/// Prints rows as left-aligned columns separated by two spaces. On a terminal (and without
/// `NO_COLOR`), `colour(column, cell)` may give an ANSI colour code for a body cell.
pub fn print_table(rows: &[Vec<String>], colour: fn(usize, &str) -> Option<&'static str>) {
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
        println!("{}", line.trim_end());
    }
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
    }

    #[test]
    fn rfc3339_timestamps() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(999), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(-1000), "1969-12-31T23:59:59Z");
    }
}
