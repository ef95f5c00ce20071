//! Wall-clock formatting: RFC 3339 timestamps with milliseconds, UTC (`2026-11-26T12:09:09.499Z`).
//!
//! # Implementation
//! Days-from-civil arithmetic (H. Hinnant's algorithm) on integers: no time-zone database,
//! no allocation beyond the output string, valid for every `u64` millisecond count we produce.
//! Digits are written by hand into the caller's buffer (the hot path is the relay).

/// Formats unix milliseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let mut out = Vec::with_capacity(RFC3339_MS_LEN);
    push_rfc3339_ms(&mut out, unix_ms);
    // Only ASCII digits and separators were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Length of [`rfc3339_ms`]'s output for years 0–9999.
pub const RFC3339_MS_LEN: usize = 24;

/// Appends [`rfc3339_ms`]'s text to `out` without a `fmt` pass or a string of its own: it
/// runs for every relayed message (the `message` frame's `ts`).
pub fn push_rfc3339_ms(out: &mut Vec<u8>, unix_ms: u64) {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    push_padded(out, y.unsigned_abs(), 4);
    out.push(b'-');
    push_padded(out, u64::from(mo), 2);
    out.push(b'-');
    push_padded(out, u64::from(d), 2);
    out.push(b'T');
    push_padded(out, rem / 3600, 2);
    out.push(b':');
    push_padded(out, (rem % 3600) / 60, 2);
    out.push(b':');
    push_padded(out, rem % 60, 2);
    out.push(b'.');
    push_padded(out, unix_ms % 1000, 3);
    out.push(b'Z');
}

/// Appends `n` in decimal, left-padded with zeros to `width` digits (more if it needs them).
pub fn push_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    while len < digits.len() && (n > 0 || len < width) {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    out.extend(digits.iter().take(len).rev());
}

/// (year, month, day) of the day `z` days after 1970-01-01.
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
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_798_286_949_499), "2026-12-26T12:09:09.499Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
    }

    #[test]
    fn rfc3339_appends_to_what_the_buffer_holds() {
        let mut out = b"ts=".to_vec();
        push_rfc3339_ms(&mut out, 1_798_286_949_499);
        assert_eq!(out, b"ts=2026-12-26T12:09:09.499Z");
        assert_eq!(out.len(), 3 + RFC3339_MS_LEN);
    }
}
