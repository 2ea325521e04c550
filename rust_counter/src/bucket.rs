//! One counting pass (docs/design.md §3): per-minute counts in flat arrays, coarser sizes summed.

use std::collections::HashMap;
use std::fmt;

use crate::parse::Parser;

/// Wrong use of the counter. Bad *data* is never an error: it is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountError {
    EmptyWindow {
        start: i64,
        end: i64,
    },
    NoSizes,
    BadSize(i64),
    Unaligned {
        start: i64,
        end: i64,
        size: i64,
    },
    TooLarge {
        minutes: i64,
        labels: usize,
    },
    /// `end - start` does not fit in an `i64` (ends near the `i64` limits).
    WindowOverflow {
        start: i64,
        end: i64,
    },
    LengthMismatch {
        timestamps: usize,
        categories: usize,
    },
}

impl fmt::Display for CountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyWindow { start, end } => write!(
                f,
                "window end (epoch minute {end}) must be after its start (epoch minute {start})"
            ),
            Self::NoSizes => f.write_str("at least one bucket size is required"),
            Self::BadSize(size) => write!(f, "bucket sizes must be positive minutes, got {size}"),
            Self::Unaligned { start, end, size } => write!(
                f,
                "window [{start}, {end}) in epoch minutes is not aligned to the {size}-minute \
                 buckets: start and end must be multiples of every size"
            ),
            Self::TooLarge { minutes, labels } => write!(
                f,
                "window of {minutes} minutes x {labels} categories is too large to count in memory"
            ),
            Self::WindowOverflow { start, end } => write!(
                f,
                "window [{start}, {end}) in epoch minutes is longer than {} minutes",
                i64::MAX
            ),
            Self::LengthMismatch {
                timestamps,
                categories,
            } => write!(
                f,
                "categories has {categories} items but timestamps has {timestamps}"
            ),
        }
    }
}

impl std::error::Error for CountError {}

/// Plain-data result, converted to Python lists only at the binding edge.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    pub processed: u64,
    pub missing: u64,
    pub invalid: u64,
    pub outside_window: u64,
    /// One list per requested size (same order), one count per bucket.
    pub counts: Vec<Vec<u64>>,
    /// Per category label index (in order of first processed occurrence): like `counts`.
    pub category_counts: Vec<Vec<Vec<u64>>>,
    /// Input positions of the first few invalid items.
    pub invalid_examples: Vec<usize>,
    /// With error counting on ([`Counter::count_errors`]): the processed inputs that
    /// were errors, like `counts`; `None` when it is off.
    pub error_counts: Option<Vec<Vec<u64>>>,
    /// Like `category_counts` (same labels, same order) for the errors; empty when off.
    pub category_error_counts: Vec<Vec<Vec<u64>>>,
}

/// A counter for one window. Category 0 is "no category"; callers map labels to indexes.
#[derive(Debug)]
pub struct Counter {
    parser: Parser,
    start: i64,
    minutes: usize,
    sizes: Vec<usize>,
    /// `per_label[label][minute - start]`.
    per_label: Vec<Vec<u64>>,
    /// `errors[label][minute - start]` while error counting is on, else `None`.
    errors: Option<Vec<Vec<u64>>>,
    /// Order in which labels were first counted (index into `per_label`).
    label_order: Vec<usize>,
    seen: Vec<bool>,
    processed: u64,
    missing: u64,
    invalid: u64,
    outside_window: u64,
    max_examples: usize,
    examples: Vec<usize>,
}

/// Where one input landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Missing,
    Invalid,
    OutsideWindow,
}

/// What [`Counter::classify`] did with a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// Valid and inside the window: count it at this minute offset.
    Count(usize),
    /// Counted as invalid.
    Invalid,
    /// Counted as missing or outside the window.
    Other,
}

/// Upper bound on the per-minute cells allocated for one pass (8 bytes each: 1 GiB).
const MAX_CELLS: i64 = 1 << 27;

impl Counter {
    /// Validate the window and sizes (docs/design.md §3: both ends multiples of every size).
    ///
    /// # Errors
    /// A [`CountError`] describing the first rule the arguments break.
    pub fn new(
        start_minute: i64,
        end_minute: i64,
        sizes: &[i64],
        max_examples: usize,
    ) -> Result<Self, CountError> {
        if end_minute <= start_minute {
            return Err(CountError::EmptyWindow {
                start: start_minute,
                end: end_minute,
            });
        }
        if sizes.is_empty() {
            return Err(CountError::NoSizes);
        }
        let mut checked = Vec::with_capacity(sizes.len());
        for &size in sizes {
            if size <= 0 {
                return Err(CountError::BadSize(size));
            }
            if start_minute.rem_euclid(size) != 0 || end_minute.rem_euclid(size) != 0 {
                return Err(CountError::Unaligned {
                    start: start_minute,
                    end: end_minute,
                    size,
                });
            }
            checked.push(usize::try_from(size).map_err(|_| CountError::BadSize(size))?);
        }
        let span = end_minute
            .checked_sub(start_minute)
            .ok_or(CountError::WindowOverflow {
                start: start_minute,
                end: end_minute,
            })?;
        let minutes = usize::try_from(span)
            .ok()
            .filter(|_| span <= MAX_CELLS)
            .ok_or(CountError::TooLarge {
                minutes: span,
                labels: 1,
            })?;
        Ok(Self {
            parser: Parser::default(),
            start: start_minute,
            minutes,
            sizes: checked,
            per_label: vec![vec![0; minutes]],
            errors: None,
            label_order: Vec::new(),
            seen: vec![false],
            processed: 0,
            missing: 0,
            invalid: 0,
            outside_window: 0,
            max_examples,
            examples: Vec::new(),
        })
    }

    /// Make room for label index `label` (labels are handed out densely from 1).
    ///
    /// # Errors
    /// [`CountError::TooLarge`] when the per-label arrays would exceed the memory bound.
    pub fn ensure_label(&mut self, label: usize) -> Result<(), CountError> {
        while self.per_label.len() <= label {
            self.check_cells(self.per_label.len() + 1)?;
            self.per_label.push(vec![0; self.minutes]);
            if let Some(errors) = &mut self.errors {
                errors.push(vec![0; self.minutes]);
            }
            self.seen.push(false);
        }
        Ok(())
    }

    /// [`CountError::TooLarge`] unless `labels` labels (twice as many arrays with error
    /// counting on) stay within the memory bound.
    fn check_cells(&self, labels: usize) -> Result<(), CountError> {
        let arrays = labels.saturating_mul(if self.errors.is_some() { 2 } else { 1 });
        let cells = arrays.saturating_mul(self.minutes);
        if i64::try_from(cells).map_or(true, |c| c > MAX_CELLS) {
            return Err(CountError::TooLarge {
                minutes: i64::try_from(self.minutes).unwrap_or(i64::MAX),
                labels,
            });
        }
        Ok(())
    }

    /// Also count errors ([`Counter::count_error_at`]), per label like the counts.
    ///
    /// # Errors
    /// [`CountError::TooLarge`] when the error arrays would exceed the memory bound.
    pub fn count_errors(&mut self) -> Result<(), CountError> {
        if self.errors.is_none() {
            self.errors = Some(Vec::new());
            if let Err(error) = self.check_cells(self.per_label.len()) {
                self.errors = None;
                return Err(error);
            }
            self.errors = Some(vec![vec![0; self.minutes]; self.per_label.len()]);
        }
        Ok(())
    }

    #[inline]
    pub fn missing(&mut self) {
        self.missing += 1;
    }

    #[inline]
    pub fn invalid(&mut self, position: usize) {
        self.invalid += 1;
        if self.examples.len() < self.max_examples {
            self.examples.push(position);
        }
    }

    /// Classify the text; for a valid timestamp inside the window return the minute
    /// offset to count (with [`Counter::count_at`], once the category is known).
    #[inline]
    pub fn classify(&mut self, text: &[u8], position: usize) -> Classified {
        if text.is_empty() {
            self.missing += 1;
            return Classified::Other;
        }
        let Some(minute) = self.parser.epoch_minute(text) else {
            self.invalid(position);
            return Classified::Invalid;
        };
        let offset = minute.wrapping_sub(self.start);
        // One unsigned comparison covers both ends of the window.
        match usize::try_from(offset) {
            Ok(index) if index < self.minutes => Classified::Count(index),
            _ => {
                self.outside_window += 1;
                Classified::Other
            }
        }
    }

    #[must_use]
    pub fn max_examples(&self) -> usize {
        self.max_examples
    }

    /// Count a processed input at minute offset `index` for `label` (0: no category).
    /// `label` must have been made room for with [`Counter::ensure_label`].
    #[inline]
    pub fn count_at(&mut self, index: usize, label: usize) {
        if let Some(cell) = self.per_label.get_mut(label).and_then(|l| l.get_mut(index)) {
            *cell += 1;
            self.processed += 1;
            if !self.seen[label] {
                self.seen[label] = true;
                self.label_order.push(label);
            }
        }
    }

    /// Count the input just counted at (`index`, `label`) as an error too. A no-op
    /// unless [`Counter::count_errors`] turned error counting on.
    #[inline]
    pub fn count_error_at(&mut self, index: usize, label: usize) {
        if let Some(cell) = self
            .errors
            .as_mut()
            .and_then(|errors| errors.get_mut(label))
            .and_then(|l| l.get_mut(index))
        {
            *cell += 1;
        }
    }

    /// Classify and count text without a category.
    #[inline]
    pub fn add(&mut self, text: &[u8], position: usize) -> Outcome {
        let missing = self.missing;
        match self.classify(text, position) {
            Classified::Count(index) => {
                self.count_at(index, 0);
                Outcome::Processed
            }
            Classified::Invalid => Outcome::Invalid,
            Classified::Other if self.missing != missing => Outcome::Missing,
            Classified::Other => Outcome::OutsideWindow,
        }
    }

    fn sum_sizes(&self, minutes: &[u64]) -> Vec<Vec<u64>> {
        self.sizes
            .iter()
            .map(|&size| {
                minutes
                    .chunks(size)
                    .map(|chunk| chunk.iter().sum())
                    .collect()
            })
            .collect()
    }

    /// Finish the pass. `with_categories`: report per-label counts (labels in the order
    /// they were first counted; `labels()` of the caller maps them back).
    #[must_use]
    pub fn finish(self, with_categories: bool) -> (Tally, Vec<usize>) {
        let counts = self.sum_sizes(&sum_labels(&self.per_label, self.minutes));
        let error_counts = self
            .errors
            .as_ref()
            .map(|errors| self.sum_sizes(&sum_labels(errors, self.minutes)));
        let category_error_counts = match &self.errors {
            Some(errors) if with_categories => self
                .label_order
                .iter()
                .map(|&label| self.sum_sizes(&errors[label]))
                .collect(),
            _ => Vec::new(),
        };
        let (category_counts, order) = if with_categories {
            let per = self
                .label_order
                .iter()
                .map(|&label| self.sum_sizes(&self.per_label[label]))
                .collect();
            (per, self.label_order.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        let tally = Tally {
            processed: self.processed,
            missing: self.missing,
            invalid: self.invalid,
            outside_window: self.outside_window,
            counts,
            category_counts,
            invalid_examples: self.examples,
            error_counts,
            category_error_counts,
        };
        (tally, order)
    }
}

/// Per-minute totals over every label.
fn sum_labels(per_label: &[Vec<u64>], minutes: usize) -> Vec<u64> {
    let mut totals = vec![0u64; minutes];
    for label in per_label {
        for (total, &count) in totals.iter_mut().zip(label) {
            *total += count;
        }
    }
    totals
}

/// Whether `text` is a whole number of ASCII digits (nothing else) that is at least
/// `threshold`: an error rule's test of a code such as `"500"` (`models.ErrorRule`).
/// Values beyond `u64` saturate, which keeps the comparison exact for any `i64` threshold.
#[must_use]
pub fn digits_at_least(text: &[u8], threshold: i64) -> bool {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let value = text.iter().fold(0u64, |acc, &digit| {
        acc.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
    });
    i128::from(value) >= i128::from(threshold)
}

/// Dense label indexes for byte-string labels (index 0 is reserved for "no category").
/// A short list scanned linearly covers the usual two or three labels; a map takes over
/// beyond that.
#[derive(Debug, Default)]
pub struct Labels {
    small: Vec<(Box<[u8]>, usize)>,
    large: HashMap<Box<[u8]>, usize>,
    count: usize,
}

const SMALL_LABELS: usize = 8;

impl Labels {
    /// Index of `label` (from 1), and whether it is new.
    pub fn index(&mut self, label: &[u8]) -> (usize, bool) {
        if let Some((_, index)) = self.small.iter().find(|(known, _)| known.as_ref() == label) {
            return (*index, false);
        }
        if let Some(&index) = self.large.get(label) {
            return (index, false);
        }
        self.count += 1;
        if self.small.len() < SMALL_LABELS {
            self.small.push((label.into(), self.count));
        } else {
            self.large.insert(label.into(), self.count);
        }
        (self.count, true)
    }
}

/// Count a slice of owned strings with no categories: the standalone loop benchmarks
/// compare the bindings to.
///
/// # Errors
/// As [`Counter::new`].
pub fn count_strs<S: AsRef<[u8]>>(
    texts: &[S],
    start_minute: i64,
    end_minute: i64,
    sizes: &[i64],
) -> Result<Tally, CountError> {
    let mut counter = Counter::new(start_minute, end_minute, sizes, 5)?;
    for (position, text) in texts.iter().enumerate() {
        counter.add(text.as_ref(), position);
    }
    Ok(counter.finish(false).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::days_from_civil;

    const START: i64 = 28_584_000; // 2024-05-07T00:00Z, a multiple of 60

    #[test]
    fn days_constant() {
        assert_eq!(days_from_civil(2024, 5, 7) * 1440, START);
    }

    #[test]
    fn buckets_and_tallies() {
        let texts = [
            "2024-05-07T00:00:00Z",
            "2024-05-07T00:04:59.999Z",
            "2024-05-07T00:05:00Z",
            "2024-05-07T00:59:60.5Z",
            "2024-05-07T01:00:00Z",
            "2024-05-06T23:59:59.999999999Z",
            "2024-05-07T01:30+01:00",
            "",
            "nope",
        ];
        let tally = count_strs(&texts, START, START + 60, &[1, 5, 15, 60]).unwrap();
        assert_eq!(tally.processed, 5);
        assert_eq!(tally.missing, 1);
        assert_eq!(tally.invalid, 1);
        assert_eq!(tally.outside_window, 2);
        assert_eq!(tally.invalid_examples, vec![8]);
        assert_eq!(tally.counts.len(), 4);
        assert_eq!(tally.counts[0].len(), 60);
        assert_eq!(tally.counts[0][0], 1);
        assert_eq!(tally.counts[0][4], 1);
        assert_eq!(tally.counts[0][5], 1);
        assert_eq!(tally.counts[0][30], 1);
        assert_eq!(tally.counts[0][59], 1);
        assert_eq!(tally.counts[1], {
            let mut v = vec![0; 12];
            v[0] = 2;
            v[1] = 1;
            v[6] = 1;
            v[11] = 1;
            v
        });
        assert_eq!(tally.counts[2], vec![3, 0, 1, 1]);
        assert_eq!(tally.counts[3], vec![5]);
        for per_size in &tally.counts {
            assert_eq!(per_size.iter().sum::<u64>(), tally.processed);
        }
    }

    #[test]
    fn window_rules() {
        assert!(matches!(
            Counter::new(0, 0, &[1], 5),
            Err(CountError::EmptyWindow { .. })
        ));
        assert!(matches!(
            Counter::new(0, 60, &[], 5),
            Err(CountError::NoSizes)
        ));
        assert!(matches!(
            Counter::new(0, 60, &[0], 5),
            Err(CountError::BadSize(0))
        ));
        assert!(matches!(
            Counter::new(0, 60, &[-5], 5),
            Err(CountError::BadSize(-5))
        ));
        assert!(matches!(
            Counter::new(5, 65, &[60], 5),
            Err(CountError::Unaligned { .. })
        ));
        assert!(matches!(
            Counter::new(0, 50, &[15], 5),
            Err(CountError::Unaligned { .. })
        ));
        assert!(Counter::new(-60, 60, &[1, 5, 15, 60], 5).is_ok());
        assert!(matches!(
            Counter::new(0, 1 << 40, &[1], 5),
            Err(CountError::TooLarge { .. })
        ));
        // Ends near the i64 limits: a clear error, not a wrapped span.
        assert!(matches!(
            Counter::new(i64::MIN, i64::MAX - 7, &[1], 5),
            Err(CountError::WindowOverflow { .. })
        ));
        assert!(matches!(
            Counter::new(i64::MIN, 0, &[1], 5),
            Err(CountError::WindowOverflow { .. })
        ));
        let message = Counter::new(5, 65, &[60], 5).unwrap_err().to_string();
        assert!(
            message.contains("not aligned to the 60-minute"),
            "{message}"
        );
    }

    #[test]
    fn digit_codes() {
        assert!(digits_at_least(b"500", 400));
        assert!(digits_at_least(b"400", 400));
        assert!(digits_at_least(b"0400", 400));
        assert!(!digits_at_least(b"399", 400));
        assert!(digits_at_least(b"99999999999999999999999999", i64::MAX));
        assert!(digits_at_least(b"0", -1));
        for text in [&b""[..], b"5xx", b" 500", b"500 ", b"-500", b"+500", b"5.0"] {
            assert!(!digits_at_least(text, 0), "{text:?}");
        }
    }

    #[test]
    fn errors_per_label_and_size() {
        let mut counter = Counter::new(START, START + 15, &[5, 15], 5).unwrap();
        counter.count_errors().unwrap();
        counter.ensure_label(1).unwrap();
        // (minute, label, is an error)
        for (minute, label, error) in [(1, 0, true), (2, 1, true), (7, 1, false), (14, 0, true)] {
            counter.count_at(minute, label);
            if error {
                counter.count_error_at(minute, label);
            }
        }
        let (tally, order) = counter.finish(true);
        assert_eq!(order, vec![0, 1]);
        assert_eq!(tally.counts, vec![vec![2, 1, 1], vec![4]]);
        assert_eq!(tally.error_counts, Some(vec![vec![2, 0, 1], vec![3]]));
        assert_eq!(
            tally.category_error_counts,
            vec![vec![vec![1, 0, 1], vec![2]], vec![vec![1, 0, 0], vec![1]]]
        );
        // Off by default: no error arrays, and count_error_at does nothing.
        let mut off = Counter::new(START, START + 15, &[15], 5).unwrap();
        off.count_at(3, 0);
        off.count_error_at(3, 0);
        let (tally, _) = off.finish(true);
        assert_eq!(tally.error_counts, None);
        assert!(tally.category_error_counts.is_empty());
    }

    #[test]
    fn error_arrays_count_against_the_memory_bound() {
        // The bound is checked before anything is allocated: pretend a long window.
        let mut counter = Counter::new(0, 60, &[1], 5).unwrap();
        counter.minutes = 1 << 27; // MAX_CELLS: the counts alone just fit
        assert!(matches!(
            counter.count_errors(),
            Err(CountError::TooLarge { labels: 1, .. })
        ));
        assert!(counter.errors.is_none());
        counter.minutes = 1 << 26; // one label's counts and errors fit, two labels do not
        counter.errors = Some(Vec::new());
        assert!(matches!(
            counter.ensure_label(1),
            Err(CountError::TooLarge { labels: 2, .. })
        ));
    }

    #[test]
    fn categories() {
        let mut counter = Counter::new(START, START + 15, &[5, 15], 5).unwrap();
        let mut labels = Labels::default();
        let inputs: [(&str, Option<&str>); 5] = [
            ("2024-05-07T00:01Z", Some("prediction")),
            ("2024-05-07T00:07Z", None),
            ("2024-05-07T00:08Z", Some("evaluation")),
            ("2024-05-07T00:14Z", Some("prediction")),
            ("2024-05-07T00:15Z", Some("never-counted")),
        ];
        let mut names = vec![None];
        for (position, (text, label)) in inputs.iter().enumerate() {
            if let Classified::Count(minute) = counter.classify(text.as_bytes(), position) {
                let label = match label {
                    Some(name) => {
                        let (index, new) = labels.index(name.as_bytes());
                        if new {
                            names.push(Some(*name));
                        }
                        counter.ensure_label(index).unwrap();
                        index
                    }
                    None => 0,
                };
                counter.count_at(minute, label);
            }
        }
        let (tally, order) = counter.finish(true);
        let first_seen: Vec<_> = order.iter().map(|&i| names[i]).collect();
        assert_eq!(
            first_seen,
            vec![Some("prediction"), None, Some("evaluation")]
        );
        assert_eq!(tally.category_counts[0], vec![vec![1, 0, 1], vec![2]]);
        assert_eq!(tally.category_counts[1], vec![vec![0, 1, 0], vec![1]]);
        assert_eq!(tally.category_counts[2], vec![vec![0, 1, 0], vec![1]]);
        assert_eq!(tally.counts, vec![vec![1, 2, 1], vec![4]]);
        assert_eq!(tally.outside_window, 1);
    }

    #[test]
    fn many_labels() {
        let mut labels = Labels::default();
        for i in 0..100u32 {
            assert_eq!(
                labels.index(format!("l{i}").as_bytes()),
                (i as usize + 1, true)
            );
        }
        assert_eq!(labels.index(b"l3"), (4, false));
        assert_eq!(labels.index(b"l50"), (51, false));
    }
}
