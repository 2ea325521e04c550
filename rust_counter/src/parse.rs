//! The accepted timestamp grammar of DESIGN §3, parsed at fixed positions.
//!
//! `YYYY-MM-DD` `[Tt ]` `hh:mm` [`:ss` [`.` 1-9 digits]] [`Z` | `z` | `±hh:mm` | `±hhmm`]
//!
//! Only the UTC epoch *minute* is computed: a bucket never needs more, seconds and the
//! fraction are validated and then ignored (the fraction is truncated, second 60 stays in
//! its minute). The zone is found from the end of the string, so the common shapes
//! (`…:ss.fffZ`, `…:ss.ffffff+00:00`, `…:ssZ`) cost the same straight-line work; the
//! validity checks are accumulated with `&` rather than returned early, so mixed fraction
//! lengths and zones do not turn into branch mispredictions.

// `&` between the checks is deliberate: evaluating all of them avoids a branch per check
// (DESIGN §8: a branchy parser pays ~10 ns per record in mispredictions on mixed input).
#![allow(clippy::needless_bitwise_bool)]

/// Shortest accepted input: `YYYY-MM-DDThh:mm`.
const MIN_LEN: usize = 16;
/// Longest accepted input: `YYYY-MM-DDThh:mm:ss.fffffffff+hh:mm`.
const MAX_LEN: usize = 35;

/// Per-byte masks of the 16-byte head `YYYY-MM-DDThh:mm`: 0xFF where a digit must be.
const HEAD_DIGITS: u128 = byte_mask(&[0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]);
/// Positions of the fixed separators `-`, `-`, `:` (byte 10 is checked on its own).
const HEAD_SEPS: u128 = byte_mask(&[4, 7, 13]);
const HEAD_SEP_VALUES: u128 = (b'-' as u128) << 32 | (b'-' as u128) << 56 | (b':' as u128) << 104;

const fn byte_mask(positions: &[usize]) -> u128 {
    let mut mask = 0u128;
    let mut i = 0;
    while i < positions.len() {
        mask |= 0xFF << (positions[i] * 8);
        i += 1;
    }
    mask
}

/// Every byte selected by `mask` is an ASCII digit.
#[inline]
fn all_digits(word: u128, mask: u128) -> bool {
    let high = 0xF0F0_F0F0_F0F0_F0F0_F0F0_F0F0_F0F0_F0F0u128 & mask;
    let low = 0x3030_3030_3030_3030_3030_3030_3030_3030u128 & mask;
    let six = 0x0606_0606_0606_0606_0606_0606_0606_0606u128 & mask;
    // A byte is a digit iff its high nibble is 3 and adding 6 keeps it there (<= 0x39).
    // A byte >= 0xFA would carry into its neighbour, but it already fails the first test.
    (word & high) == low && (word.wrapping_add(six) & high) == low
}

#[inline]
fn digit(b: u8) -> i64 {
    i64::from(b.wrapping_sub(b'0'))
}

#[inline]
fn two(s: &[u8], at: usize) -> i64 {
    digit(s[at]) * 10 + digit(s[at + 1])
}

#[inline]
fn is_digit(b: u8) -> bool {
    b.wrapping_sub(b'0') < 10
}

const fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1-12) of `year`; 0 for a month out of range, so no day is valid.
#[inline]
fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let m = usize::try_from(month).unwrap_or(0);
    DAYS.get(m).copied().unwrap_or(0) + i64::from(m == 2 && is_leap(year))
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), for year >= 0.
#[inline]
#[must_use]
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Bytes 0-9 of the head: the date `YYYY-MM-DD`.
const DATE_BYTES: u128 = (1u128 << 80) - 1;

/// The UTC epoch minute of an accepted timestamp, or `None` for any other input.
///
/// The instant may lie outside years 1-9999 once the zone offset is applied
/// (`0001-01-01T00:00+01:00`); it is still a valid timestamp, just far outside any window.
#[must_use]
pub fn epoch_minute(s: &[u8]) -> Option<i64> {
    Parser::default().epoch_minute(s)
}

/// The parser with a one-entry memo of the last valid date: records of one batch share
/// a handful of dates, so the calendar arithmetic runs once per date change, not per
/// record.
#[derive(Debug, Default, Clone)]
pub struct Parser {
    /// Date bytes of the last valid date (0 never matches: a date is digits).
    date: u128,
    /// Days since the epoch of that date.
    days: i64,
}

impl Parser {
    /// As [`epoch_minute`].
    #[must_use]
    pub fn epoch_minute(&mut self, s: &[u8]) -> Option<i64> {
        let n = s.len();
        if !(MIN_LEN..=MAX_LEN).contains(&n) {
            return None;
        }
        let mut head = [0u8; 16];
        head.copy_from_slice(&s[..16]);
        let word = u128::from_le_bytes(head);
        let sep = head[10];
        let mut ok = all_digits(word, HEAD_DIGITS)
            & ((word & HEAD_SEPS) == HEAD_SEP_VALUES)
            & ((sep | 0x20) == b't' || sep == b' ');

        let date = word & DATE_BYTES;
        let days = if date == self.date {
            self.days
        } else {
            let year = two(&head, 0) * 100 + two(&head, 2);
            let month = two(&head, 5);
            let day = two(&head, 8);
            let valid = ok & (year >= 1) & (day >= 1) & (day <= days_in_month(year, month));
            ok &= valid;
            let days = days_from_civil(year, month, day);
            if valid {
                self.date = date;
                self.days = days;
            }
            days
        };
        let hour = two(&head, 11);
        let minute = two(&head, 14);
        ok &= (hour <= 23) & (minute <= 59);
        // Zone, read from the end. Before a zone there is always a digit, so the shapes
        // cannot be confused: `Z`/`z` last, or a sign 6 (`±hh:mm`) or 5 (`±hhmm`) from the end.
        let last = s[n - 1];
        let sign6 = s[n - 6];
        let sign5 = s[n - 5];
        let (zone_len, offset) = if n > MIN_LEN && (last | 0x20) == b'z' {
            (1, 0)
        } else if n >= MIN_LEN + 6 && (sign6 == b'+' || sign6 == b'-') {
            ok &= (s[n - 3] == b':') & is_digit(s[n - 5]) & is_digit(s[n - 4]);
            ok &= is_digit(s[n - 2]) & is_digit(last);
            (6, zone_offset(sign6, two(s, n - 5), two(s, n - 2), &mut ok))
        } else if n >= MIN_LEN + 5 && (sign5 == b'+' || sign5 == b'-') {
            ok &= is_digit(s[n - 4]) & is_digit(s[n - 3]) & is_digit(s[n - 2]) & is_digit(last);
            (5, zone_offset(sign5, two(s, n - 4), two(s, n - 2), &mut ok))
        } else {
            (0, 0)
        };

        // Between the head and the zone: nothing, `:ss`, or `:ss.` + 1-9 digits.
        let body = n - MIN_LEN - zone_len;
        if body != 0 {
            // Bytes past the end read as NUL, which fails every check below.
            let at = |i: usize| s.get(i).copied().unwrap_or(0);
            let (s0, s1) = (at(17), at(18));
            ok &= (body == 3 || (5..=13).contains(&body))
                & (at(16) == b':')
                & is_digit(s0)
                & is_digit(s1)
                & (digit(s0) * 10 + digit(s1) <= 60);
            if body > 3 {
                ok &= at(19) == b'.';
                let frac_end = MIN_LEN + body;
                // Fixed trip count: unrolled, no data-dependent exit.
                for i in 20..29 {
                    let b = s.get(i).copied().unwrap_or(b'0');
                    ok &= (i >= frac_end) | is_digit(b);
                }
            }
        }

        if ok {
            Some((days * 24 + hour) * 60 + minute - offset)
        } else {
            None
        }
    }
}

/// Offset in minutes east of UTC for `±hh mm`; clears `ok` when out of range.
#[inline]
fn zone_offset(sign: u8, hours: i64, minutes: i64, ok: &mut bool) -> i64 {
    *ok &= (hours <= 23) & (minutes <= 59);
    let magnitude = hours * 60 + minutes;
    if sign == b'-' {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        (days_from_civil(y, mo, d) * 24 + h) * 60 + mi
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }

    #[test]
    fn accepted_forms() {
        let base = minute(2024, 5, 1, 12, 34);
        for text in [
            "2024-05-01T12:34",
            "2024-05-01t12:34",
            "2024-05-01 12:34",
            "2024-05-01T12:34Z",
            "2024-05-01T12:34z",
            "2024-05-01T12:34:56",
            "2024-05-01T12:34:56Z",
            "2024-05-01T12:34:56.7Z",
            "2024-05-01T12:34:56.789Z",
            "2024-05-01T12:34:56.789123+00:00",
            "2024-05-01T12:34:56.123456789Z",
            "2024-05-01T12:34:60.999Z",
            "2024-05-01T12:34:00-0000",
            "2024-05-01T12:34+00:00",
            "2024-05-01T12:34+0000",
        ] {
            assert_eq!(epoch_minute(text.as_bytes()), Some(base), "{text}");
        }
    }

    #[test]
    fn offsets() {
        let t = |s: &str| epoch_minute(s.as_bytes());
        assert_eq!(
            t("2024-01-01T00:30+01:00"),
            Some(minute(2023, 12, 31, 23, 30))
        );
        assert_eq!(t("2023-12-31T23:30-0130"), Some(minute(2024, 1, 1, 1, 0)));
        assert_eq!(
            t("2024-02-28T23:59:59.999-23:59"),
            Some(minute(2024, 2, 29, 23, 58))
        );
        assert_eq!(t("0001-01-01T00:00+00:01"), Some(minute(1, 1, 1, 0, 0) - 1));
        assert_eq!(
            t("9999-12-31T23:59-23:59"),
            Some(minute(9999, 12, 31, 23, 59) + 1439)
        );
    }

    #[test]
    fn calendar() {
        let t = |s: &str| epoch_minute(s.as_bytes()).is_some();
        assert!(t("2024-02-29T00:00"));
        assert!(t("2000-02-29T00:00"));
        assert!(!t("2023-02-29T00:00"));
        assert!(!t("1900-02-29T00:00"));
        assert!(!t("2024-04-31T00:00"));
        assert!(t("2024-12-31T23:59"));
        assert!(!t("2024-13-01T00:00"));
        assert!(!t("2024-00-01T00:00"));
        assert!(!t("2024-01-00T00:00"));
        assert!(!t("2024-01-32T00:00"));
        assert!(!t("0000-01-01T00:00"));
        assert!(t("0001-01-01T00:00"));
        assert!(t("9999-12-31T23:59"));
        assert!(!t("2024-01-01T24:00"));
        assert!(!t("2024-01-01T23:60"));
        assert!(!t("2024-01-01T23:59:61"));
    }

    #[test]
    fn near_misses() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01T12",
            "2024-05-01T12:3",
            "2024-05-01T12:34:",
            "2024-05-01T12:34:5",
            "2024-05-01T12:34:56.",
            "2024-05-01T12:34:56.1234567890Z",
            "2024-05-01T12:34:56.Z",
            "2024-05-01T12:34:56,123Z",
            "2024-05-01T12:34:56ZZ",
            "2024-05-01T12:34:56+01",
            "2024-05-01T12:34:56+1:00",
            "2024-05-01T12:34:56+01:0",
            "2024-05-01T12:34:56+0100Z",
            "2024-05-01T12:34:56+24:00",
            "2024-05-01T12:34:56+01:60",
            "2024-05-01T12:34:56+01-00",
            "2024-05-01T12:34:56 +01:00",
            "2024-05-01X12:34",
            "2024/05/01T12:34",
            "2024-05-01T12-34",
            " 2024-05-01T12:34",
            "2024-05-01T12:34 ",
            "2024-05-01T12:34\n",
            "+2024-05-01T12:34",
            "20240501T1234",
            "2024-05-01T12:34:56.123+01:00:00",
            "2024-05-01T12:34Z+01:00",
            "2024-05-01T12:34.5",
        ] {
            assert_eq!(epoch_minute(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn non_ascii_digits_and_high_bytes() {
        // Arabic-Indic digit 4 (U+0664) in the year.
        assert_eq!(epoch_minute("202٤-05-01T12:34".as_bytes()), None);
        // Fullwidth digits.
        assert_eq!(epoch_minute("２０２４-05-01T12:34".as_bytes()), None);
        let mut bytes = b"2024-05-01T12:34:56.123Z".to_vec();
        for b in [0xFFu8, 0xFA, 0x3A, 0x2F, 0x00] {
            for i in 0..bytes.len() {
                let saved = bytes[i];
                if saved.is_ascii_digit() {
                    bytes[i] = b;
                    assert_eq!(epoch_minute(&bytes), None, "{bytes:?}");
                    bytes[i] = saved;
                }
            }
        }
    }

    #[test]
    fn date_memo_never_changes_an_answer() {
        let inputs = [
            "2024-02-29T00:00Z",
            "2023-02-29T00:00Z",
            "2024-02-29T24:00Z",
            "2024-02-29T23:59-23:59",
            "2024-02-29X00:00Z",
            "2024-02-2900:00Z",
            "2024-03-01T00:00+01:00",
            "0000-01-01T00:00",
            "2024-02-29 12:34:56.789Z",
            "2024-02-29T12:34:56.789+0530",
        ];
        let mut shared = Parser::default();
        for round in 0..3 {
            for i in 0..inputs.len() {
                let fresh = epoch_minute(inputs[i].as_bytes());
                assert_eq!(
                    shared.epoch_minute(inputs[i].as_bytes()),
                    fresh,
                    "{}",
                    inputs[i]
                );
                let other = inputs[(i * 7 + round) % inputs.len()].as_bytes();
                assert_eq!(shared.epoch_minute(other), epoch_minute(other));
            }
        }
    }

    #[test]
    fn fraction_lengths() {
        let mut text = String::from("2024-05-01T12:34:56.");
        for len in 1..=10 {
            text.push('9');
            let with_zone = format!("{text}Z");
            let expect = len <= 9;
            assert_eq!(epoch_minute(text.as_bytes()).is_some(), expect, "{text}");
            assert_eq!(
                epoch_minute(with_zone.as_bytes()).is_some(),
                expect,
                "{with_zone}"
            );
            let with_offset = format!("{text}+05:30");
            assert_eq!(
                epoch_minute(with_offset.as_bytes()).is_some(),
                expect,
                "{with_offset}"
            );
            let compact = format!("{text}-0530");
            assert_eq!(
                epoch_minute(compact.as_bytes()).is_some(),
                expect,
                "{compact}"
            );
        }
    }
}
