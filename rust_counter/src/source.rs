//! Reading the caller's Python list in place (docs/design.md §3, issue 2) with pyo3's safe API
//! only (issue 10): every object is held by an owned reference (`Bound`) for as long as
//! its bytes or identity are used, so Python code that runs meanwhile (a mapping's `get`,
//! a dict key's `__eq__`, a finaliser run by the garbage collector) cannot free it under
//! us. A `str`'s UTF-8 is borrowed from the object (`to_str`, i.e.
//! `PyUnicode_AsUTF8AndSize`, which for ASCII strings is the object's own buffer), and no
//! Python object is created per item. Only the binding module (`lib.rs`) calls this.

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use crate::bucket::{Classified, CountError, Counter, Labels, Tally};

/// A failure while counting: wrong arguments, or an exception raised by Python code the
/// input ran (a record's own `get`, a dict key's `__eq__`).
pub enum Failure {
    Arguments(CountError),
    Python(PyErr),
}

impl From<CountError> for Failure {
    fn from(error: CountError) -> Self {
        Self::Arguments(error)
    }
}

impl From<PyErr> for Failure {
    fn from(error: PyErr) -> Self {
        Self::Python(error)
    }
}

/// What one Python value is, for the counting rules.
pub(crate) enum Value<'a> {
    /// `None`, or a key that is absent.
    Nothing,
    /// A `str` (or subclass) and its UTF-8 bytes.
    Text(&'a [u8]),
    /// A `str` that has no UTF-8 form (lone surrogates): never a valid timestamp.
    Unencodable,
    /// Anything else.
    Other,
}

/// Classify an object; the bytes live as long as the reference to it.
///
/// A `str` subclass is read by its characters (the C call reads the `str` data and runs
/// none of the subclass's methods), exactly as the pure-Python loop's `str.__str__`.
#[inline]
pub(crate) fn value<'a>(obj: &'a Bound<'_, PyAny>) -> Value<'a> {
    // The exact check is an inline type compare; `cast` (a subclass check) is a call.
    let text = match obj.cast_exact::<PyString>() {
        Ok(text) => text,
        Err(_) => match obj.cast::<PyString>() {
            Ok(text) => text,
            Err(_) if obj.is_none() => return Value::Nothing,
            Err(_) => return Value::Other,
        },
    };
    match text.to_str() {
        Ok(text) => Value::Text(text.as_bytes()),
        // UnicodeEncodeError for lone surrogates: a bad value, not a failed call.
        Err(_) => Value::Unencodable,
    }
}

/// The error for a list that got shorter or longer while it was being counted (only
/// Python code the input runs can do that): counting a list that changed under us would
/// be a count of no list the caller ever had.
pub(crate) fn changed_size(what: &str) -> PyErr {
    PyRuntimeError::new_err(format!(
        "{what} changed size during counting (Python code run by an item modified the list)"
    ))
}

/// Item `index` of `list` (an owned reference), or [`changed_size`] if it shrank.
#[inline]
pub(crate) fn list_item<'py>(
    list: &Bound<'py, PyList>,
    index: usize,
    what: &str,
) -> PyResult<Bound<'py, PyAny>> {
    list.get_item(index).map_err(|_| changed_size(what))
}

/// [`changed_size`] unless `list` still has the `len` items it had at the start.
pub(crate) fn same_size(list: &Bound<'_, PyList>, len: usize, what: &str) -> PyResult<()> {
    if list.len() == len {
        Ok(())
    } else {
        Err(changed_size(what))
    }
}

/// How many label objects are recognised by identity before their bytes are read.
const SAME_OBJECT: usize = 8;

/// Maps category values to the counter's label indexes, keeping an exact `str` for each
/// label to hand back as the result's key.
pub(crate) struct Categories<'py> {
    py: Python<'py>,
    labels: Labels,
    /// `objects[label]`: an exact `str` (a subclass label is copied, as the pure-Python
    /// loop does, so no caller method runs on the result's keys); index 0 is "no category".
    objects: Vec<Option<Py<PyAny>>>,
    /// `(object, label)` of up to [`SAME_OBJECT`] label strings seen, so a repeated
    /// object (a literal, an interned or shared string) skips the UTF-8 read and the
    /// byte compare. Each entry holds a strong reference, so its address cannot be
    /// reused by another object while it is here; a `str`'s characters never change, so
    /// neither does its label.
    same: Vec<(Py<PyAny>, usize)>,
}

impl<'py> Categories<'py> {
    pub(crate) fn new(py: Python<'py>) -> Self {
        Self {
            py,
            labels: Labels::default(),
            objects: vec![None],
            same: Vec::with_capacity(SAME_OBJECT),
        }
    }

    /// Label index of a category value (0 unless it is a `str`).
    #[inline]
    pub(crate) fn index(
        &mut self,
        counter: &mut Counter,
        obj: &Bound<'py, PyAny>,
    ) -> Result<usize, Failure> {
        if obj.is_none() {
            return Ok(0);
        }
        let ptr = obj.as_ptr();
        if let Some((_, index)) = self.same.iter().find(|(known, _)| known.as_ptr() == ptr) {
            return Ok(*index);
        }
        self.index_slow(counter, obj)
    }

    /// [`Categories::index`] for an object not seen before: read its bytes. `obj` is a
    /// strong reference held by the caller for the whole call.
    #[inline(never)]
    fn index_slow(
        &mut self,
        counter: &mut Counter,
        obj: &Bound<'py, PyAny>,
    ) -> Result<usize, Failure> {
        let Ok(text) = obj.cast::<PyString>() else {
            return Ok(0);
        };
        let exact = obj.is_exact_instance_of::<PyString>();
        let encoded;
        let (bytes, copy): (&[u8], Option<Bound<'py, PyString>>) = if let Ok(utf8) = text.to_str() {
            let copy = (!exact).then(|| PyString::new(self.py, utf8));
            (utf8.as_bytes(), copy)
        } else {
            // A label with lone surrogates: key it by its lossless surrogatepass
            // form, which is never valid UTF-8 and so never equals another label's
            // key. `str.encode` is called unbound, so a subclass's `encode` never runs.
            encoded = self
                .py
                .get_type::<PyString>()
                .getattr(intern!(self.py, "encode"))?
                .call1((obj, "utf-8", "surrogatepass"))?
                .cast_into::<PyBytes>()
                .map_err(PyErr::from)?;
            let copy = if exact {
                None
            } else {
                Some(PyString::from_encoded_object(
                    &encoded,
                    Some(c"utf-8"),
                    Some(c"surrogatepass"),
                )?)
            };
            (encoded.as_bytes(), copy)
        };
        let (index, new) = self.labels.index(bytes);
        if new {
            counter.ensure_label(index)?;
            let key = copy.map_or_else(|| obj.clone(), Bound::into_any);
            self.objects.push(Some(key.unbind()));
        }
        if self.same.len() < SAME_OBJECT {
            self.same.push((obj.clone().unbind(), index));
        }
        Ok(index)
    }

    /// Category keys in the order of the tally's `category_counts`.
    pub(crate) fn keys(&self, order: &[usize]) -> Vec<Option<Py<PyAny>>> {
        order
            .iter()
            .map(|&label| {
                self.objects
                    .get(label)
                    .and_then(|o| o.as_ref().map(|o| o.clone_ref(self.py)))
            })
            .collect()
    }
}

/// The finished counts, the category key of each `category_counts` entry, and the first
/// few invalid values themselves (for the caller's log).
pub type Counted = (Tally, Vec<Option<Py<PyAny>>>, Vec<Py<PyAny>>);

/// Keeps the first few invalid values (the counter keeps only their positions).
pub(crate) struct Examples {
    pub(crate) max: usize,
    pub(crate) values: Vec<Py<PyAny>>,
}

impl Examples {
    /// Count `obj` as invalid at `position` and keep it if there is room.
    pub(crate) fn invalid(
        &mut self,
        counter: &mut Counter,
        obj: &Bound<'_, PyAny>,
        position: usize,
    ) {
        counter.invalid(position);
        self.kept(obj);
    }

    /// Keep `obj`, already counted invalid by the counter, if there is room.
    pub(crate) fn kept(&mut self, obj: &Bound<'_, PyAny>) {
        if self.values.len() < self.max {
            self.values.push(obj.clone().unbind());
        }
    }
}

/// Count a list of timestamp values, with an optional parallel list of categories.
pub fn count_list(
    timestamps: &Bound<'_, PyList>,
    categories: Option<&Bound<'_, PyList>>,
    mut counter: Counter,
) -> Result<Counted, Failure> {
    let py = timestamps.py();
    let n = timestamps.len();
    if let Some(categories) = categories {
        if categories.len() != n {
            return Err(CountError::LengthMismatch {
                timestamps: n,
                categories: categories.len(),
            }
            .into());
        }
    }
    let mut labels = Categories::new(py);
    let mut examples = Examples {
        max: counter.max_examples(),
        values: Vec::new(),
    };
    for position in 0..n {
        let item = list_item(timestamps, position, "timestamps")?;
        let index = match value(&item) {
            Value::Text(bytes) => match counter.classify(bytes, position) {
                Classified::Count(index) => Some(index),
                Classified::Invalid => {
                    examples.kept(&item);
                    None
                }
                Classified::Other => None,
            },
            Value::Nothing => {
                counter.missing();
                None
            }
            Value::Unencodable | Value::Other => {
                examples.invalid(&mut counter, &item, position);
                None
            }
        };
        if let Some(index) = index {
            let label = match categories {
                Some(categories) => {
                    let category = list_item(categories, position, "categories")?;
                    labels.index(&mut counter, &category)?
                }
                None => 0,
            };
            counter.count_at(index, label);
        }
    }
    same_size(timestamps, n, "timestamps")?;
    if let Some(categories) = categories {
        same_size(categories, n, "categories")?;
    }
    let (tally, order) = counter.finish(categories.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
