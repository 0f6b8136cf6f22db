//! UTC timestamps without a date crate: RFC 3339 for the manifest, RFC 2822 for apt's Release.

use std::time::{SystemTime, UNIX_EPOCH};

/// (year, month, day, hour, minute, second, weekday 0=Sunday) of a Unix time.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32, usize) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wd = usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        wd,
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

pub(crate) fn rfc2822(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(secs);
    format!(
        "{}, {d:02} {} {y} {h:02}:{mi:02}:{s:02} UTC",
        DAYS[wd],
        MONTHS[(mo - 1) as usize]
    )
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(now_secs())
}

pub(crate) fn now_rfc2822() -> String {
    rfc2822(now_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // date -u -d @1796184000 → Wed Dec  2 04:00:00 UTC 2026
        assert_eq!(rfc3339(1_796_184_000), "2026-12-02T04:00:00Z");
        assert_eq!(rfc2822(1_796_184_000), "Wed, 02 Dec 2026 04:00:00 UTC");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 UTC");
    }
}
