//! Durations and points in time as a policy writes them.
//!
//! Durations: `"90s"`, `"15m"`, `"24h"`, `"7d"`, `"2w"`, combinations such as `"1h30m"`, or a bare
//! number of seconds. Times: RFC 3339 (`"2026-12-31T00:00:00Z"`, `"2026-12-31T02:00:00+02:00"`,
//! fractional seconds ignored; a bare date `"2026-12-31"` means midnight UTC) or Unix seconds.
//! No clock and no date library: the calendar arithmetic is done here.

/// Seconds per unit letter of a duration.
fn unit_seconds(unit: u8) -> Option<u64> {
    match unit {
        b's' => Some(1),
        b'm' => Some(60),
        b'h' => Some(3_600),
        b'd' => Some(86_400),
        b'w' => Some(7 * 86_400),
        _ => None,
    }
}

/// Parses a run of ASCII digits (no sign, at least one digit) as `u64`.
fn digits_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a duration and returns it in seconds.
///
/// Accepts a bare number of seconds (`"3600"`) or one or more number–unit pairs with the units
/// `s`, `m`, `h`, `d` and `w` (`"90s"`, `"15m"`, `"24h"`, `"7d"`, `"1h30m"`). Surrounding
/// whitespace is ignored. Returns `None` for anything else, including values that overflow `u64`.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(n) = digits_u64(s) {
        return Some(n);
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b.is_ascii_digit() {
            continue;
        }
        let number = digits_u64(s.get(start..i)?)?;
        let unit = unit_seconds(b)?;
        total = total.checked_add(number.checked_mul(unit)?)?;
        start = i + 1;
    }
    // A trailing number without a unit ("1h30") is ambiguous: refuse it.
    if start != bytes.len() {
        return None;
    }
    Some(total)
}

/// Parses a point in time and returns it as Unix seconds.
///
/// Accepts Unix seconds as a digit string (`"1790000000"`) or an RFC 3339 date-time
/// (`"2026-12-31T00:00:00Z"`, `"2026-12-31T02:00:00+02:00"`, `t`/space for `T` and `z` for `Z`,
/// fractional seconds ignored, a leap second `:60` counted as the next second). A bare date
/// (`"2026-12-31"`) means midnight UTC. Times before 1970 and date-times without an offset are
/// refused (`None`).
pub fn parse_time(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(n) = digits_u64(s) {
        return Some(n);
    }
    rfc3339(s.as_bytes())
}

/// Reads `len` ASCII digits at `at`.
fn fixed_digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = b.get(at..at.checked_add(len)?)?;
    let mut n: u32 = 0;
    for &c in field {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

/// Whether the byte at `at` is `want`.
fn byte_is(b: &[u8], at: usize, want: u8) -> bool {
    b.get(at) == Some(&want)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339(b: &[u8]) -> Option<u64> {
    let year = i64::from(fixed_digits(b, 0, 4)?);
    let month = fixed_digits(b, 5, 2)?;
    let day = fixed_digits(b, 8, 2)?;
    if !byte_is(b, 4, b'-') || !byte_is(b, 7, b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return u64::try_from(days.checked_mul(86_400)?).ok();
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || !byte_is(b, 13, b':')
        || !byte_is(b, 16, b':')
    {
        return None;
    }
    let hour = fixed_digits(b, 11, 2)?;
    let minute = fixed_digits(b, 14, 2)?;
    let second = fixed_digits(b, 17, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    if byte_is(b, i, b'.') {
        i += 1;
        let first = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == first {
            return None;
        }
    }
    let offset: i64 = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && byte_is(b, i + 3, b':') => {
            let oh = fixed_digits(b, i + 1, 2)?;
            let om = fixed_digits(b, i + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3_600 + om * 60);
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(hour * 3_600 + minute * 60 + second) - offset;
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        assert_eq!(parse_duration("1h30m"), Some(5_400));
        assert_eq!(parse_duration(" 3600 "), Some(3_600));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("0s"), Some(0));
        for bad in [
            "", " ", "h", "24x", "1h30", "-5s", "+5", "+5s", "1.5h", "24 h", "24H", "s5",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("99999999999999999999"), None);
        assert_eq!(parse_duration("9999999999999999999d"), None);
        assert_eq!(parse_duration("18446744073709551615s"), Some(u64::MAX));
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(parse_time("2026-01-10T00:00:00Z"), Some(1_768_003_200));
        assert_eq!(parse_time("2026-12-31T00:00:00Z"), Some(1_798_675_200));
        assert_eq!(parse_time("2026-12-31"), Some(1_798_675_200));
        assert_eq!(parse_time("2026-12-31T02:00:00+02:00"), Some(1_798_675_200));
        assert_eq!(parse_time("2026-12-30T19:30:00-04:30"), Some(1_798_675_200));
        assert_eq!(
            parse_time("2026-12-31t00:00:00.123456z"),
            Some(1_798_675_200)
        );
        assert_eq!(parse_time("2026-12-31 00:00:00Z"), Some(1_798_675_200));
        assert_eq!(parse_time("2024-02-29T12:00:00Z"), Some(1_709_208_000));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(parse_time("1790000000"), Some(1_790_000_000));
        assert_eq!(parse_time("2016-12-31T23:59:60Z"), Some(1_483_228_800));
        for bad in [
            "",
            "2026-12-31T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31",
            "2026-00-10",
            "2026-12-31T24:00:00Z",
            "2026-12-31T00:60:00Z",
            "2026-12-31T00:00:00.Z",
            "2026-12-31T00:00:00+2:00",
            "2026-12-31T00:00:00+24:00",
            "2026-12-31T00:00:00Zjunk",
            "1969-12-31T23:59:59Z",
            "1970-01-01T01:00:00+01:01",
            "-1",
            "2026/12/31",
            "20261231",
            "2026-12-31X",
            "2026-1-31",
        ] {
            if bad == "20261231" {
                // A digit string is Unix seconds.
                assert_eq!(parse_time(bad), Some(20_261_231));
                continue;
            }
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }
}
