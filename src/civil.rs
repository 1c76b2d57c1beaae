//! Civil (proleptic Gregorian) dates and Unix time, without a date crate: Howard Hinnant's
//! `days_from_civil` / `civil_from_days`. Used by the `Retry-After` HTTP-date parser and the
//! issued-certificate validity check.

/// Days since 1970-01-01 of year `y`, month `m` (1-12), day `d` (1-31); negative before 1970.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix time `t` (seconds) as `YYYY-MM-DDThh:mm:ssZ`.
pub(crate) fn utc(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
        for t in [951_782_400_i64, 1_796_124_153, 4_102_444_799] {
            let s = utc(t);
            let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
            let back = days_from_civil(n(0..4), n(5..7), n(8..10)) * 86_400
                + n(11..13) * 3600
                + n(14..16) * 60
                + n(17..19);
            assert_eq!(back, t, "{s}");
        }
    }
}
