//! The accepted timestamp grammar of docs/design.md §3, parsed at fixed positions.
//!
//! `YYYY-MM-DD` `[Tt ]` `hh:mm` [`:ss` [`.` 1-9 digits]] [`Z` | `z` | `±hh:mm` | `±hhmm`]
//!
//! Only the UTC epoch *minute* is computed: a bucket never needs more, seconds and the
//! fraction are validated and then ignored (the fraction is truncated, second 60 stays in
//! its minute).
//!
//! Whatever its shape, the text is read as four little-endian words: the head (`YYYY-MM-`
//! and `DDThh:mm`), the last 8 bytes (the zone) and 16 bytes shifted so that byte 16 comes
//! first (seconds and fraction). Each word is xor-ed with a template (`'0'` where a digit
//! goes, the separator where one goes), which turns digits into their values and a correct
//! separator into 0, and one add-and-mask then checks all its bytes at once (SWAR). The
//! zone's shape (none, `Z`, `±hhmm`, `±hh:mm`) is read from the last bytes and picks its
//! template from a table; the body's length follows from the text's. Mixed fraction
//! lengths and zones so cost the same straight-line work, with no branch to mispredict
//! (docs/design.md §8: a branchy parser pays ~10 ns per record on mixed input).

// `&` between the checks is deliberate: evaluating all of them avoids a branch per check.
#![allow(clippy::needless_bitwise_bool)]

/// Shortest accepted input: `YYYY-MM-DDThh:mm`.
const MIN_LEN: usize = 16;
/// Longest accepted input: `YYYY-MM-DDThh:mm:ss.fffffffff+hh:mm`.
const MAX_LEN: usize = 35;

/// The high bit of every byte.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// `text` as a little-endian word (byte `i` at bits `8 * i`), zero past its end and for
/// `_` (a byte that is not checked).
const fn pattern(text: &[u8]) -> u128 {
    let mut word = 0u128;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'_' {
            word |= (text[i] as u128) << (i * 8);
        }
        i += 1;
    }
    word
}

/// The per-byte addend of [`bad_bytes`] for a template: `0x76` where a digit goes (a value
/// 0-9 stays below `0x80`, 10 and more reach it), `0x7F` where a separator goes (only an
/// exact match, 0, stays below), 0 for `_`, a byte that is not checked (masked to 0).
const fn addend(template: &[u8]) -> u128 {
    let mut word = 0u128;
    let mut i = 0;
    while i < template.len() {
        let add: u128 = match template[i] {
            b'0' => 0x76,
            b'_' => 0,
            _ => 0x7F,
        };
        word |= add << (i * 8);
        i += 1;
    }
    word
}

/// 0xFF for every byte of `template` that is checked (not `_`), 0 elsewhere.
const fn checked(template: &[u8]) -> u128 {
    let mut word = 0u128;
    let mut i = 0;
    while i < template.len() {
        if template[i] != b'_' {
            word |= 0xFF << (i * 8);
        }
        i += 1;
    }
    word
}

/// The low 8 bytes of a `pattern` or `addend`.
#[allow(clippy::cast_possible_truncation)]
const fn low(word: u128) -> u64 {
    word as u64
}

/// Nonzero iff some byte of `x` (a word xor-ed with its template) is wrong: above 9 where
/// a digit goes (`add` byte `0x76`), not 0 where a separator goes (`0x7F`).
///
/// A byte with its high bit set fails through `| x`; below that, adding at most `0x7F`
/// cannot carry into the next byte, so the bytes are checked independently.
#[inline]
#[must_use]
pub const fn bad_bytes(x: u64, add: u64) -> u64 {
    (x.wrapping_add(add) | x) & HIGH
}

/// Byte `i` of the result is `10 * x[i] + x[i + 1]` for digit values `x`: every two-digit
/// number at once (no byte exceeds 99, so none carries).
#[inline]
const fn pairs(x: u64) -> u64 {
    x.wrapping_mul(10).wrapping_add(x >> 8)
}

/// Byte `i` of `word`, `i` < 8.
#[inline]
#[allow(clippy::cast_possible_wrap)]
const fn byte(word: u64, i: u32) -> i64 {
    ((word >> (8 * i)) & 0xFF) as i64
}

/// The 8 bytes of `s` from `at` as a little-endian word.
#[inline]
fn load8(s: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*s.get(at..)?.first_chunk::<8>()?))
}

// The head as two words: `YYYY-MM-` and `DDThh:mm`. Byte 10 (`T`, `t` or space) is checked
// on its own, with [`SEPARATOR`].
const DATE: &[u8] = b"0000-00-";
const TIME: &[u8] = b"00_00:00";
/// Range check of the time's pairs: hour (byte 3) at most 23, minute (byte 6) at most 59.
const TIME_RANGE: u64 = limit(3, 23) | limit(6, 59);

/// Accepted byte 10.
const SEPARATOR: [bool; 256] = {
    let mut table = [false; 256];
    table[b'T' as usize] = true;
    table[b't' as usize] = true;
    table[b' ' as usize] = true;
    table
};

/// Added to `pairs(...)` so that byte `at` reaches `0x80` iff its number exceeds `max`
/// (a number of two valid digits is at most 99, so no byte carries).
const fn limit(at: u32, max: u64) -> u64 {
    (0x7F - max) << (8 * at)
}

/// From byte 16: `:ss`, then `.` and 1-9 fraction digits.
const BODY: &[u8] = b":00.000000000";
/// Accepted body lengths: 0 (`hh:mm`), 3 (`:ss`), 5-13 (`:ss.f` to `:ss.fffffffff`).
const BODY_LENGTHS: u32 = 1 | 1 << 3 | 0x3FE0;

/// Checks of one 8-byte word of the text: `(word & mask) ^ template` turns the digits into
/// their values and the separators into 0; [`Word::bad`] tests them and two-digit limits.
#[derive(Clone, Copy)]
struct Word {
    mask: u64,
    template: u64,
    add: u64,
    range: u64,
}

impl Word {
    const NONE: Self = Self {
        mask: 0,
        template: 0,
        add: 0,
        range: 0,
    };

    /// Checks `form[at..at + 8]`, skipping `_` and bytes before 16 (the head's own).
    const fn of(form: &[u8; MAX_LEN], n: usize, at: usize) -> Self {
        let mut word = Self::NONE;
        let mut i = 0;
        while i < 8 {
            let p = at + i;
            if p >= MIN_LEN && p < n && form[p] != b'_' {
                word.mask |= 0xFF << (8 * i);
                word.template |= (form[p] as u64) << (8 * i);
                word.add |= (if form[p] == b'0' { 0x76 } else { 0x7F }) << (8 * i);
            }
            i += 1;
        }
        word
    }

    /// The digit values (and zeroed separators) of `word`.
    #[inline]
    const fn digits(&self, word: u64) -> u64 {
        (word & self.mask) ^ self.template
    }

    /// High bits set for a wrong byte of `digits` or a number over its limit.
    #[inline]
    const fn bad(&self, digits: u64) -> u64 {
        bad_bytes(digits, self.add) | pairs(digits).wrapping_add(self.range)
    }
}

/// Everything that depends on the text's length and zone shape: the checks of the word at
/// byte 16 (or the last 8 bytes of a shorter text) and of the last 16 bytes, and where the
/// zone offset is.
#[derive(Clone, Copy)]
struct Shape {
    middle: Word,
    tail_low: Word,
    tail: Word,
    /// Byte of `pairs(tail digits)` holding the zone hour (the minute is byte 6).
    hour_at: u32,
    /// Byte of the last word holding the sign.
    sign_at: u32,
    /// 1 with an offset, 0 without.
    has_offset: i64,
}

/// Zone shapes, from the last bytes: 0 none, 1 `Z`/`z`, 2 `±hhmm`, 3 `±hh:mm`.
const ZONE_LEN: [usize; 4] = [0, 1, 5, 6];

/// The shape index from bit 0: last byte is `Z`/`z`; bit 1: sign 6 from the end; bit 2:
/// sign 5 from the end. Before a zone there is always a digit, so for a valid text at most
/// one is set; otherwise the first that is wins, and the checks reject the text.
const ZONE_OF: [usize; 8] = [0, 1, 3, 1, 2, 1, 3, 1];

/// Byte is `+` or `-`.
const SIGN: [u8; 256] = {
    let mut table = [0; 256];
    table[b'+' as usize] = 1;
    table[b'-' as usize] = 1;
    table
};

// Positions are below 35.
#[allow(clippy::cast_possible_truncation)]
const fn shape(n: usize, zone: usize) -> Shape {
    let zone_len = ZONE_LEN[zone];
    // The text with `0` for digits, separators as such and `_` for what is not checked.
    let mut form = [b'_'; MAX_LEN];
    let valid = n >= MIN_LEN + zone_len && {
        let body_len = n - MIN_LEN - zone_len;
        body_len <= 13 && (BODY_LENGTHS >> body_len) & 1 == 1
    };
    if valid {
        let mut i = MIN_LEN;
        while i < n - zone_len {
            form[i] = BODY[i - MIN_LEN];
            i += 1;
        }
        // The sign (or `Z`) was seen when the shape was chosen.
        let zone_form: &[u8] = match zone {
            2 => b"_0000",
            3 => b"_00:00",
            _ => b"",
        };
        let mut j = 0;
        while j < zone_form.len() {
            form[n - zone_form.len() + j] = zone_form[j];
            j += 1;
        }
    }
    let middle_at = if n >= 24 { 16 } else { n - 8 };
    let mut middle = Word::of(&form, n, middle_at);
    let tail_low = Word::of(&form, n, n - 16);
    let mut tail = Word::of(&form, n, n - 8);
    if !valid {
        // Always fails: byte 0 is at least 0x80 after the add.
        middle.add |= 0x80;
    }
    if valid && n - zone_len >= MIN_LEN + 3 {
        middle.range |= limit((17 - middle_at) as u32, 60);
    }
    let hour_at = if zone == 3 { 3 } else { 4 };
    if zone >= 2 {
        tail.range |= limit(hour_at, 23) | limit(6, 59);
    }
    Shape {
        middle,
        tail_low,
        tail,
        hour_at,
        sign_at: hour_at - 1,
        has_offset: if zone >= 2 { 1 } else { 0 },
    }
}

/// [`Shape`]s by text length (from [`MIN_LEN`]) and zone shape.
static SHAPES: [[Shape; 4]; MAX_LEN - MIN_LEN + 1] = {
    let mut table = [[shape(MIN_LEN, 0); 4]; MAX_LEN - MIN_LEN + 1];
    let mut n = MIN_LEN;
    while n <= MAX_LEN {
        let mut zone = 0;
        while zone < 4 {
            table[n - MIN_LEN][zone] = shape(n, zone);
            zone += 1;
        }
        n += 1;
    }
    table
};

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

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), for years 1-9999 and
/// months 1-12 (any other input gives some number without panicking).
///
/// Hinnant's `days_from_civil` without branches: the year starts in March, so the leap
/// day ends it, and `y / 4 - y / 100 + y / 400` counts the leap days before it.
#[inline]
#[must_use]
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let before_march = i64::from(month <= 2);
    let y = year - before_march;
    // Months from March: 0 (March) to 11 (February).
    let m = month + 12 * before_march - 3;
    // 719_469: days from 0000-03-01 to 1970-01-01, the day-of-year counting from 1.
    365 * y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400) + (153 * m + 2) / 5 + day
        - 719_469
}

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
    /// Bytes 0-9 of the last valid date, as the two head words (`date_high` keeps bytes
    /// 8-9). The initial zeros never match a text that passes the digit check.
    date_low: u64,
    date_high: u64,
    /// Days since the epoch of that date.
    days: i64,
}

impl Parser {
    /// As [`epoch_minute`].
    #[must_use]
    pub fn epoch_minute(&mut self, s: &[u8]) -> Option<i64> {
        let n = s.len();
        let shapes = SHAPES.get(n.wrapping_sub(MIN_LEN))?;
        let date_word = load8(s, 0)?;
        let time_word = load8(s, 8)?;
        // From byte 16 when the text has 24 bytes or more; else its last 8 bytes.
        let middle_word = load8(s, (n - 8).min(16))?;
        let tail_low_word = load8(s, n - 16)?;
        let tail_word = load8(s, n - 8)?;

        let key = usize::from((s[n - 1] | 0x20) == b'z')
            | usize::from(SIGN[usize::from(s[n - 6])]) << 1
            | usize::from(SIGN[usize::from(s[n - 5])]) << 2;
        let shape = &shapes[ZONE_OF[key & 7]];

        let date = (date_word ^ low(pattern(DATE))) & low(checked(DATE));
        let time = (time_word & low(checked(TIME))) ^ low(pattern(TIME));
        let time_pairs = pairs(time);
        let tail = shape.tail.digits(tail_word);
        let mut bad = bad_bytes(date, low(addend(DATE)))
            | bad_bytes(time, low(addend(TIME)))
            | time_pairs.wrapping_add(TIME_RANGE)
            | shape.middle.bad(shape.middle.digits(middle_word))
            | shape.tail_low.bad(shape.tail_low.digits(tail_low_word))
            | shape.tail.bad(tail);
        bad &= HIGH;

        let tail_pairs = pairs(tail);
        let magnitude =
            (byte(tail_pairs, shape.hour_at) * 60 + byte(tail_pairs, 6)) * shape.has_offset;
        let offset = if byte(tail_word, shape.sign_at) == i64::from(b'-') {
            -magnitude
        } else {
            magnitude
        };
        let (hour, minute) = (byte(time_pairs, 3), byte(time_pairs, 6));
        let ok = (bad == 0) & SEPARATOR[usize::from(s[10])];

        let days = if date_word == self.date_low && time_word & 0xFFFF == self.date_high {
            self.days
        } else {
            let date_pairs = pairs(date);
            let year = byte(date_pairs, 0) * 100 + byte(date_pairs, 2);
            let month = byte(date_pairs, 5);
            let day = byte(time_pairs, 0);
            if !(ok & (year >= 1) & (day >= 1) & (day <= days_in_month(year, month))) {
                return None;
            }
            self.date_low = date_word;
            self.date_high = time_word & 0xFFFF;
            self.days = days_from_civil(year, month, day);
            self.days
        };

        if ok {
            Some((days * 24 + hour) * 60 + minute - offset)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(y: i64, mo: i64, d: i64, h: i64, mi: i64) -> i64 {
        (days_from_civil(y, mo, d) * 24 + h) * 60 + mi
    }

    /// Independent calendar: the Gregorian leap rule and month lengths, written out.
    fn reference_month_len(year: i64, month: i64) -> i64 {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        match month {
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => 31,
        }
    }

    #[test]
    fn days_from_civil_counts_every_day_of_years_1_to_9999() {
        // Walk day by day: each date is one more than the previous, and 1970-01-01 is 0.
        let mut expected = days_from_civil(1, 1, 1);
        let mut seen_epoch = false;
        for year in 1..=9999 {
            for month in 1..=12 {
                assert_eq!(days_in_month(year, month), reference_month_len(year, month));
                for day in 1..=reference_month_len(year, month) {
                    assert_eq!(
                        days_from_civil(year, month, day),
                        expected,
                        "{year}-{month}-{day}"
                    );
                    seen_epoch |= (year, month, day) == (1970, 1, 1) && expected == 0;
                    expected += 1;
                }
            }
        }
        assert!(seen_epoch);
        assert_eq!(days_in_month(2024, 0), 0);
        assert_eq!(days_in_month(2024, 13), 0);
    }

    #[test]
    fn calendar_dates_of_sampled_years() {
        // Every month and day 00-39 of a sample of years (all leap-rule cases included).
        let years = (1..=9999).filter(|y| y % 97 == 1 || y % 100 == 0 || y % 4 == 0 && y % 13 == 0);
        for year in years.chain([1, 4, 100, 400, 1900, 2000, 2024, 9996, 9999]) {
            for month in 0..=13 {
                for day in 0..40 {
                    let text = format!("{year:04}-{month:02}-{day:02}T12:34:56.789Z");
                    let valid = (1..=12).contains(&month)
                        && day >= 1
                        && day <= reference_month_len(year, month);
                    let expect = valid.then(|| minute(year, month, day, 12, 34));
                    assert_eq!(epoch_minute(text.as_bytes()), expect, "{text}");
                }
            }
        }
    }

    #[test]
    fn swar_check_of_every_byte_pair() {
        // Digit pair, then separator: exactly the ASCII digits pass, and `pairs` reads them.
        let word = Word::of(
            &{
                let mut form = [b'_'; MAX_LEN];
                form[16] = b'0';
                form[17] = b'0';
                form[18] = b':';
                form
            },
            MAX_LEN,
            16,
        );
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                for sep in [b':', b'.', 0, 0xBA, b'0'] {
                    let text = u64::from_le_bytes([b0, b1, sep, b'x', 0xFF, 0, b'9', 0x80]);
                    let digits = word.digits(text);
                    let good = b0.is_ascii_digit() && b1.is_ascii_digit() && sep == b':';
                    assert_eq!(
                        word.bad(digits) & HIGH == 0,
                        good,
                        "{b0:#x} {b1:#x} {sep:#x}"
                    );
                    if good {
                        let value = i64::from(b0 - b'0') * 10 + i64::from(b1 - b'0');
                        assert_eq!(byte(pairs(digits), 0), value);
                    }
                }
            }
        }
    }

    #[test]
    fn every_byte_pair_in_every_numeric_field() {
        // Each two-digit field of each shape, over all 65,536 byte pairs: accepted iff both
        // are ASCII digits and the number is in range; the minute then moves as it should.
        let base = minute(2024, 5, 17, 12, 34);
        // (text, offset of the pair, limits, minutes added per unit)
        let fields: [(&str, usize, std::ops::RangeInclusive<i64>, i64); 12] = [
            ("2024-05-17T12:34:56.789Z", 11, 0..=23, 60),
            ("2024-05-17T12:34:56.789Z", 14, 0..=59, 1),
            ("2024-05-17T12:34:56.789Z", 17, 0..=60, 0),
            ("2024-05-17T12:34:56.789Z", 20, 0..=99, 0),
            ("2024-05-17T12:34:56.789123456Z", 27, 0..=99, 0),
            ("2024-05-17 12:34:56", 17, 0..=60, 0),
            ("2024-05-17T12:34:56.789123+00:00", 27, 0..=23, -60),
            ("2024-05-17T12:34:56.789123+00:00", 30, 0..=59, -1),
            ("2024-05-17T12:34:56.789123456-0000", 30, 0..=23, 60),
            ("2024-05-17T12:34:56.789123456-0000", 32, 0..=59, 1),
            ("2024-05-17T12:34+00:00", 17, 0..=23, -60),
            ("2024-05-17T12:34-0000", 19, 0..=59, 1),
        ];
        let mut parser = Parser::default();
        for (text, at, range, per_unit) in fields {
            let mut bytes = text.as_bytes().to_vec();
            let original = i64::from(bytes[at] - b'0') * 10 + i64::from(bytes[at + 1] - b'0');
            for b0 in 0..=255u8 {
                for b1 in 0..=255u8 {
                    bytes[at] = b0;
                    bytes[at + 1] = b1;
                    let value = (b0.is_ascii_digit() && b1.is_ascii_digit())
                        .then(|| i64::from(b0 - b'0') * 10 + i64::from(b1 - b'0'))
                        .filter(|v| range.contains(v));
                    let expect = value.map(|v| base + (v - original) * per_unit);
                    assert_eq!(
                        parser.epoch_minute(&bytes),
                        expect,
                        "{text} at {at}: {b0:#x} {b1:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_length_and_zone_shape() {
        // Each body length 0-14 with each zone: accepted exactly for the grammar's lengths.
        let mut parser = Parser::default();
        for body_len in 0..=14 {
            let body = &":56.123456789x"[..body_len];
            for zone in [
                "", "Z", "z", "+0000", "-00:00", "+", "00:00", "+00:0", "0000",
            ] {
                let text = format!("2024-05-17T12:34{body}{zone}");
                let body_ok = matches!(body_len, 0 | 3 | 5..=13);
                let zone_ok = ["", "Z", "z", "+0000", "-00:00"].contains(&zone);
                // The brute-force grammar decides; a zone of bare digits can read as a longer
                // fraction or seconds, so the hand-made expectation is only a lower bound.
                let expect = reference_accepts(&text);
                assert!(!(body_ok && zone_ok) || expect, "reference rejects {text}");
                assert_eq!(
                    parser.epoch_minute(text.as_bytes()).is_some(),
                    expect,
                    "{text}"
                );
            }
        }
    }

    /// The grammar by brute force: every split into head, body and zone.
    fn reference_accepts(text: &str) -> bool {
        let n = text.len();
        (16..=n).any(|body_end| {
            let (body, zone) = (&text[16..body_end], &text[body_end..]);
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let body_ok = body.is_empty()
                || (body.len() == 3
                    && body.starts_with(':')
                    && digits(&body[1..])
                    && &body[1..] <= "60")
                || (body.len() >= 5
                    && body.len() <= 13
                    && body.starts_with(':')
                    && digits(&body[1..3])
                    && &body[1..3] <= "60"
                    && body.as_bytes()[3] == b'.'
                    && digits(&body[4..]));
            let zone_ok = matches!(zone, "" | "Z" | "z")
                || ((zone.len() == 5 || zone.len() == 6)
                    && (zone.starts_with('+') || zone.starts_with('-'))
                    && digits(&zone[1..3])
                    && &zone[1..3] <= "23"
                    && digits(&zone[zone.len() - 2..])
                    && &zone[zone.len() - 2..] <= "59"
                    && (zone.len() == 5 || zone.as_bytes()[3] == b':'));
            body_ok && zone_ok
        })
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
