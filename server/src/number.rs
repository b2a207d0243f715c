//! Number parsing and formatting with Redis's rules: integers as `string2ll` reads them (no
//! sign `+`, no spaces, no leading zeros, at most 20 bytes), floats as `strtold` reads them but
//! without spaces, NaN or a trailing junk byte.

/// Longest integer text Redis accepts (`-9223372036854775808` is 20 bytes).
const INTEGER_TEXT_BYTES_MAX: usize = 20;

/// Parses an integer exactly as Redis's `string2ll` does.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > INTEGER_TEXT_BYTES_MAX {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text[0] {
        b'-' => (true, &text[1..]),
        _ => (false, text),
    };
    // The first digit must be 1-9: no leading zeros, no "-0".
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &byte in digits {
        if !byte.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Parses a float as Redis's `string2ld` (`strtold`) does: the whole text must be a number,
/// no leading space, and NaN is refused. Decimal and C99 hexadecimal (`0x1.8p3`) forms are
/// read; `inf`/`infinity` are accepted (INCRBYFLOAT then refuses the result), but a finite
/// literal too large for the type is refused, as `strtold` reports ERANGE for it. (The type
/// is f64 here, long double in Redis: see docs/commands.md.)
pub fn parse_f64(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let value: f64 = match unsigned.get(..2) {
        Some("0x" | "0X") => parse_hex_f64(text)?,
        _ => text.parse().ok()?,
    };
    if value.is_nan() {
        return None;
    }
    let infinity_literal =
        unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity");
    if value.is_infinite() && !infinity_literal {
        return None;
    }
    Some(value)
}

/// Hexadecimal significand digits kept (more cannot change an f64).
const HEX_DIGITS_KEPT: u32 = 15;

/// `[+-]0x<hex>[.<hex>][p[+-]<decimal>]`, as `strtold` reads it: at least one hex digit, and
/// a `p` must be followed by its exponent.
fn parse_hex_f64(text: &str) -> Option<f64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let rest = &rest[2..];
    let (significand, exponent) = match rest.find(['p', 'P']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = significand.split_once('.').unwrap_or((significand, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut mantissa: u64 = 0;
    let mut digits_kept = 0;
    let mut binary_exponent: i64 = 0;
    for (index, digit) in whole.chars().chain(fraction.chars()).enumerate() {
        let value = digit.to_digit(16)?;
        let in_fraction = index >= whole.len();
        if digits_kept < HEX_DIGITS_KEPT {
            mantissa = mantissa * 16 + u64::from(value);
            digits_kept += u32::from(mantissa != 0);
            binary_exponent -= if in_fraction { 4 } else { 0 };
        } else if !in_fraction {
            binary_exponent += 4;
        }
    }
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        // Saturate: anything past a few thousand already over- or underflows.
        let magnitude: i64 = digits.parse().unwrap_or(i64::MAX / 2).min(1 << 20);
        binary_exponent += if exponent.starts_with('-') {
            -magnitude
        } else {
            magnitude
        };
    }
    let mut value = mantissa as f64;
    // Scale in steps so an intermediate power of two does not overflow on its own.
    while binary_exponent > 0 && value.is_finite() && value != 0.0 {
        let step = binary_exponent.min(1000);
        value *= 2f64.powi(step as i32);
        binary_exponent -= step;
    }
    while binary_exponent < 0 && value != 0.0 {
        let step = binary_exponent.max(-1000);
        value *= 2f64.powi(step as i32);
        binary_exponent -= step;
    }
    Some(if negative { -value } else { value })
}

/// Formats a float the way INCRBYFLOAT stores it: plain decimal, no exponent, shortest text
/// that reads back to the same f64.
pub fn format_f64(value: f64) -> String {
    if value == 0.0 {
        // "-0" would read back fine but Redis prints 0.
        return "0".into();
    }
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"",
            b"-",
            b"1a",
            b"1.0",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn hexadecimal_floats_as_strtold_reads_them() {
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"0X1A"), Some(26.0));
        assert_eq!(parse_f64(b"-0x10"), Some(-16.0));
        assert_eq!(parse_f64(b"+0x.8"), Some(0.5));
        assert_eq!(parse_f64(b"0x1.8p1"), Some(3.0));
        assert_eq!(parse_f64(b"0x1p-2"), Some(0.25));
        assert_eq!(parse_f64(b"0x1P+4"), Some(16.0));
        assert_eq!(parse_f64(b"0x1."), Some(1.0));
        assert_eq!(parse_f64(b"0x0"), Some(0.0));
        assert_eq!(
            parse_f64(b"0xffffffffffffffffffff"),
            Some(1.2089258196146292e24)
        );
        assert_eq!(parse_f64(b"0x1p-1080"), Some(0.0));
        for bad in [
            &b"0x"[..],
            b"0x.",
            b"0xg",
            b"0x1p",
            b"0x1p+",
            b"0x1q",
            b"0x1p2.5",
            b"0x1p99999999999999999999",
        ] {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-3"), Some(-3.0));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1x"), None);
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"Infinity"), Some(f64::INFINITY));
        // strtold reports ERANGE for a finite literal past the type's range: refused.
        assert_eq!(parse_f64(b"1e400"), None);
        assert_eq!(parse_f64(b"-1e400"), None);
        assert_eq!(parse_f64(b"1e308"), Some(1e308));
        assert_eq!(format_f64(10.5), "10.5");
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(5.0e3), "5000");
        assert_eq!(format_f64(-0.0), "0");
    }
}
