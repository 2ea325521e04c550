//! Counting a list of records (docs/design.md §3, §7): a record is a dict (or subclass), read
//! directly like `dict.get`, or any object with a mapping `get`. Only the binding module
//! (`lib.rs`) calls this.
//!
//! Safe API only (issue 10): every record and every value looked up is an owned
//! reference, so a key's `__eq__`/`__hash__` or a mapping's `get` may mutate or free the
//! list, the record or the value without anything here reading freed memory. A list
//! that changes size meanwhile is an error (`source::changed_size`), as in the
//! pure-Python loop.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::bucket::{Classified, Counter};
use crate::source::{list_item, same_size, value, Categories, Counted, Examples, Failure, Value};

/// How a record's fields are looked up.
pub struct RecordFields<'py> {
    /// Timestamp fields, tried in order: the first whose value is not absent, `None` or
    /// `""` decides the record.
    pub fields: Vec<Bound<'py, PyString>>,
    pub category: Option<Bound<'py, PyString>>,
}

/// What one timestamp field's value did to its record.
enum Field {
    /// Absent, `None` or `""`: the next field decides.
    Next,
    /// The value decided the record: `Some(minute index)` to count, else nothing to count.
    Decided(Option<usize>),
}

/// Classify one timestamp field's value (`None`: the key is absent).
#[inline]
fn decide(
    counter: &mut Counter,
    examples: &mut Examples,
    found: Option<&Bound<'_, PyAny>>,
    position: usize,
) -> Field {
    let Some(found) = found else {
        return Field::Next;
    };
    match value(found) {
        Value::Nothing | Value::Text([]) => Field::Next,
        Value::Text(bytes) => Field::Decided(match counter.classify(bytes, position) {
            Classified::Count(at) => Some(at),
            Classified::Invalid => {
                examples.kept(found);
                None
            }
            Classified::Other => None,
        }),
        Value::Unencodable | Value::Other => {
            examples.invalid(counter, found, position);
            Field::Decided(None)
        }
    }
}

/// A record as the loop reads it.
enum Record<'a, 'py> {
    /// A dict or subclass: read directly, like `dict.get` (no `__missing__`, no `get`).
    Dict(&'a Bound<'py, PyDict>),
    /// Any other object with a `get` attribute: called.
    Mapping(&'a Bound<'py, PyAny>),
}

impl<'py> Record<'_, 'py> {
    /// The value under `key`, owned (`None`: absent, for a dict).
    #[inline]
    fn get(&self, key: &Bound<'py, PyString>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self {
            Self::Dict(dict) => dict.get_item(key),
            Self::Mapping(mapping) => mapping
                .call_method1(intern!(mapping.py(), "get"), (key,))
                .map(Some),
        }
    }
}

/// Count a list of records (dicts, or any objects with a mapping `get`).
///
/// Per dict record: one item reference, one lookup per timestamp field tried, one for the
/// category, and no allocation (docs/design.md §7: within 4x of the standalone loop).
pub fn count_records(
    records: &Bound<'_, PyList>,
    fields: &RecordFields<'_>,
    mut counter: Counter,
) -> Result<Counted, Failure> {
    let py = records.py();
    let n = records.len();
    let mut labels = Categories::new(py);
    let mut examples = Examples {
        max: counter.max_examples(),
        values: Vec::new(),
    };
    for position in 0..n {
        let item = list_item(records, position, "records")?;
        let record = if let Ok(dict) = item.cast::<PyDict>() {
            Record::Dict(dict)
        } else if item.hasattr(intern!(py, "get"))? {
            Record::Mapping(&item)
        } else {
            examples.invalid(&mut counter, &item, position);
            continue;
        };
        let mut index = None;
        let mut decided = false;
        for field in &fields.fields {
            let found = record.get(field)?;
            if let Field::Decided(at) =
                decide(&mut counter, &mut examples, found.as_ref(), position)
            {
                index = at;
                decided = true;
                break;
            }
        }
        if !decided {
            counter.missing();
        }
        let Some(index) = index else { continue };
        let label = match &fields.category {
            Some(field) => match record.get(field)? {
                Some(found) => labels.index(&mut counter, &found)?,
                None => 0,
            },
            None => 0,
        };
        counter.count_at(index, label);
    }
    same_size(records, n, "records")?;
    let (tally, order) = counter.finish(fields.category.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
