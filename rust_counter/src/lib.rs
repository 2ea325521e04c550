//! `metrics_agg._rust_counter`: the compiled counting loop (docs/design.md §3).
//!
//! The grammar lives in `parse`, the counting in `bucket`, both plain Rust that
//! `cargo test` exercises without Python. With the `python` feature this file adds the
//! bindings and nothing else: argument conversion, and `CountError` -> `ValueError`.

pub mod bucket;
pub mod parse;
#[cfg(feature = "python")]
mod records;
#[cfg(feature = "python")]
mod source;

#[cfg(feature = "python")]
// pyo3 extracts arguments as owned values (`Vec<i64>`, `String`).
#[allow(clippy::needless_pass_by_value)]
mod bindings {
    use pyo3::exceptions::{PyMemoryError, PyValueError};
    use pyo3::prelude::*;
    use pyo3::types::{PyList, PyString};

    #[cfg(feature = "bench")]
    use crate::bucket::count_strs;
    use crate::bucket::{CountError, Counter, Tally};
    use crate::records::{self, ErrorRule, RecordFields};
    use crate::source::{self, Counted, Failure};

    /// `(processed, missing, invalid, outside_window, counts, category_counts,
    /// invalid_examples, error_counts, category_error_counts)`, the shape
    /// `_rust_counter.pyi` declares.
    type RawCount = (
        u64,
        u64,
        u64,
        u64,
        Vec<Vec<u64>>,
        Vec<(Option<Py<PyAny>>, Vec<Vec<u64>>)>,
        Vec<Py<PyAny>>,
        Option<Vec<Vec<u64>>>,
        Vec<Vec<Vec<u64>>>,
    );
    /// `(field, accepted values, threshold)`: `models.ErrorRule` as data.
    type ErrorRuleData = (String, Vec<String>, Option<i64>);

    fn to_py_error(error: CountError) -> PyErr {
        match error {
            CountError::TooLarge { .. } => PyMemoryError::new_err(error.to_string()),
            _ => PyValueError::new_err(error.to_string()),
        }
    }

    fn raw(counted: Result<Counted, Failure>) -> PyResult<RawCount> {
        let (tally, keys, examples) = counted.map_err(|failure| match failure {
            Failure::Arguments(error) => to_py_error(error),
            Failure::Python(error) => error,
        })?;
        let Tally {
            processed,
            missing,
            invalid,
            outside_window,
            counts,
            category_counts,
            error_counts,
            category_error_counts,
            ..
        } = tally;
        let categories = keys.into_iter().zip(category_counts).collect();
        Ok((
            processed,
            missing,
            invalid,
            outside_window,
            counts,
            categories,
            examples,
            error_counts,
            category_error_counts,
        ))
    }

    /// Count a list of timestamp values (and optional parallel category labels).
    #[pyfunction]
    #[pyo3(signature = (timestamps, categories=None, /, *, start_minute, end_minute, sizes, max_examples=5))]
    fn count_strings(
        timestamps: &Bound<'_, PyList>,
        categories: Option<&Bound<'_, PyList>>,
        start_minute: i64,
        end_minute: i64,
        sizes: Vec<i64>,
        max_examples: usize,
    ) -> PyResult<RawCount> {
        let counter =
            Counter::new(start_minute, end_minute, &sizes, max_examples).map_err(to_py_error)?;
        raw(source::count_list(timestamps, categories, counter))
    }

    /// Count a list of records by their first present timestamp field.
    #[pyfunction]
    #[pyo3(signature = (records, /, *, fields, category_field, start_minute, end_minute, sizes, max_examples=5, errors=None))]
    #[allow(clippy::too_many_arguments)]
    fn count_records(
        records: &Bound<'_, PyList>,
        fields: Vec<String>,
        category_field: Option<String>,
        start_minute: i64,
        end_minute: i64,
        sizes: Vec<i64>,
        max_examples: usize,
        errors: Option<Vec<ErrorRuleData>>,
    ) -> PyResult<RawCount> {
        let py = records.py();
        if fields.is_empty() {
            return Err(PyValueError::new_err(
                "at least one timestamp field is required",
            ));
        }
        let mut counter =
            Counter::new(start_minute, end_minute, &sizes, max_examples).map_err(to_py_error)?;
        if errors.is_some() {
            counter.count_errors().map_err(to_py_error)?;
        }
        // Interned keys hash once and usually match the dict's keys by identity.
        let fields = RecordFields {
            fields: fields.iter().map(|f| PyString::intern(py, f)).collect(),
            category: category_field.map(|f| PyString::intern(py, &f)),
            errors: errors.map(|rules| {
                rules
                    .into_iter()
                    .map(|(field, values, at_least)| ErrorRule {
                        field: PyString::intern(py, &field),
                        values: values
                            .into_iter()
                            .map(|v| v.into_bytes().into_boxed_slice())
                            .collect(),
                        at_least,
                    })
                    .collect()
            }),
        };
        raw(records::count_records(records, &fields, counter))
    }

    /// Benchmark aid: the same strings copied into Rust once, so the standalone loop
    /// (`bucket::count_strs`, no Python objects involved) can be timed against the
    /// bindings. Not part of the counting contract; only with the `bench` feature.
    #[cfg(feature = "bench")]
    #[pyclass(frozen, name = "_OwnedStrings", module = "metrics_agg._rust_counter")]
    struct OwnedStrings {
        texts: Vec<Box<[u8]>>,
    }

    #[cfg(feature = "bench")]
    #[pymethods]
    impl OwnedStrings {
        #[new]
        #[pyo3(signature = (texts, /))]
        fn new(texts: Vec<String>) -> Self {
            Self {
                texts: texts
                    .into_iter()
                    .map(|t| t.into_bytes().into_boxed_slice())
                    .collect(),
            }
        }

        /// `(processed, missing, invalid, outside_window)` of the standalone loop.
        #[pyo3(signature = (*, start_minute, end_minute, sizes))]
        fn count(
            &self,
            start_minute: i64,
            end_minute: i64,
            sizes: Vec<i64>,
        ) -> PyResult<(u64, u64, u64, u64)> {
            let tally =
                count_strs(&self.texts, start_minute, end_minute, &sizes).map_err(to_py_error)?;
            Ok((
                tally.processed,
                tally.missing,
                tally.invalid,
                tally.outside_window,
            ))
        }
    }

    #[pymodule]
    fn _rust_counter(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(count_strings, m)?)?;
        m.add_function(wrap_pyfunction!(count_records, m)?)?;
        #[cfg(feature = "bench")]
        m.add_class::<OwnedStrings>()?;
        m.add(
            "build_profile",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        )?;
        Ok(())
    }
}
