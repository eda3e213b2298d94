//! Wall-clock timestamps as the API writes them (RFC 3339, metav1.Time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2025-01-31T12:34:56Z`: metav1.Time, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    let (date, secs) = split(t);
    format!("{date}T{}Z", clock(secs))
}

pub fn now() -> String {
    rfc3339(SystemTime::now())
}

/// `now + d`, as metav1.Time.
pub fn after(d: Duration) -> String {
    rfc3339(SystemTime::now() + d)
}

fn clock(secs_of_day: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

fn split(t: SystemTime) -> (String, u64) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let days = since.as_secs() / 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    (format!("{y:04}-{m:02}-{d:02}"), since.as_secs() % 86_400)
}

/// Howard Hinnant's days → (year, month, day) for the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_251_199_000_123);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
    }
}
