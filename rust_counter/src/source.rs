//! Reading the caller's Python list in place (docs/design.md §3, issue 2): items are borrowed
//! from the list, a `str`'s UTF-8 is borrowed from the object (abi3
//! `PyUnicode_AsUTF8AndSize`, which for ASCII strings is the object's own buffer), and no
//! Python object is created per item. Only the binding module (`lib.rs`) calls this.

use pyo3::exceptions::PyIndexError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;

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

/// Classify a borrowed object.
///
/// # Safety
/// `obj` must be a valid object pointer, the GIL held, and the returned bytes used only
/// while `obj` stays alive (strings are immutable, so their UTF-8 cache never moves).
#[inline]
pub(crate) unsafe fn value<'a>(obj: *mut ffi::PyObject) -> Value<'a> {
    // SAFETY: the caller guarantees `obj` is valid with the GIL held.
    unsafe {
        if ffi::PyUnicode_CheckExact(obj) != 0 || ffi::PyUnicode_Check(obj) != 0 {
            let mut size: ffi::Py_ssize_t = 0;
            let data = ffi::PyUnicode_AsUTF8AndSize(obj, &raw mut size);
            if data.is_null() {
                // UnicodeEncodeError for lone surrogates: a bad value, not a failed call.
                ffi::PyErr_Clear();
                return Value::Unencodable;
            }
            let len = usize::try_from(size).unwrap_or(0);
            // SAFETY: CPython guarantees `size` valid bytes at `data`, owned by `obj`.
            Value::Text(std::slice::from_raw_parts(data.cast::<u8>(), len))
        } else if obj == ffi::Py_None() {
            Value::Nothing
        } else {
            Value::Other
        }
    }
}

/// Borrowed item `index` of `list`, or the `IndexError` if the list shrank meanwhile.
#[inline]
pub(crate) fn list_item(list: &Bound<'_, PyList>, index: usize) -> PyResult<*mut ffi::PyObject> {
    let at = ffi::Py_ssize_t::try_from(index)
        .map_err(|_| PyIndexError::new_err("list index out of range"))?;
    // SAFETY: `list` is a live list and the GIL is held; PyList_GetItem bounds-checks and
    // returns a borrowed reference (or NULL with IndexError set).
    let item = unsafe { ffi::PyList_GetItem(list.as_ptr(), at) };
    if item.is_null() {
        Err(PyErr::fetch(list.py()))
    } else {
        Ok(item)
    }
}

/// How many label objects are recognised by identity before their bytes are read.
const SAME_OBJECT: usize = 8;

/// Maps category values to the counter's label indexes, keeping the first object seen
/// for each label so it can be handed back as the result's key.
pub(crate) struct Categories<'py> {
    py: Python<'py>,
    labels: Labels,
    /// `objects[label]`; index 0 is "no category".
    objects: Vec<Option<Py<PyAny>>>,
    /// `(object, label)` of up to [`SAME_OBJECT`] label strings seen, so a repeated
    /// object (a literal, an interned or shared string) skips the UTF-8 read and the
    /// byte compare. Every pointer here is kept alive by `objects` or `aliases` for the
    /// whole pass, so it can never be reused by another object meanwhile; a `str`'s
    /// characters never change, so neither does its label.
    same: Vec<(*mut ffi::PyObject, usize)>,
    /// Strong references to the other objects in `same`.
    aliases: Vec<Py<PyAny>>,
}

impl<'py> Categories<'py> {
    pub(crate) fn new(py: Python<'py>) -> Self {
        Self {
            py,
            labels: Labels::default(),
            objects: vec![None],
            same: Vec::with_capacity(SAME_OBJECT),
            aliases: Vec::new(),
        }
    }

    /// Label index of a category value (0 unless it is a `str`).
    ///
    /// # Safety
    /// As [`value`]: `obj` valid, GIL held.
    #[inline]
    pub(crate) unsafe fn index(
        &mut self,
        counter: &mut Counter,
        obj: *mut ffi::PyObject,
    ) -> Result<usize, Failure> {
        // SAFETY: Py_None is a static, immortal object.
        if obj == unsafe { ffi::Py_None() } {
            return Ok(0);
        }
        if let Some(&(_, index)) = self.same.iter().find(|(known, _)| *known == obj) {
            return Ok(index);
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.index_slow(counter, obj) }
    }

    /// [`Categories::index`] for an object not seen before: read its bytes.
    ///
    /// # Safety
    /// As [`value`]: `obj` valid, GIL held.
    #[inline(never)]
    unsafe fn index_slow(
        &mut self,
        counter: &mut Counter,
        obj: *mut ffi::PyObject,
    ) -> Result<usize, Failure> {
        let key: Vec<u8>;
        // SAFETY: forwarded from the caller.
        let (bytes, remember): (&[u8], bool) = match unsafe { value(obj) } {
            Value::Text(bytes) => (bytes, true),
            Value::Unencodable => {
                // A label with lone surrogates: key it by its lossless surrogatepass form,
                // which is never valid UTF-8 and so never equals another label's key.
                // SAFETY: `obj` is a valid str with the GIL held; the result is owned.
                let any = unsafe { Bound::from_borrowed_ptr(self.py, obj) };
                let encoded = any.call_method1("encode", ("utf-8", "surrogatepass"))?;
                key = encoded.extract::<Vec<u8>>()?;
                (&key, false)
            }
            Value::Nothing | Value::Other => return Ok(0),
        };
        let (index, new) = self.labels.index(bytes);
        // SAFETY: `obj` is valid with the GIL held; this takes a new strong reference,
        // which keeps the pointer stored in `same` alive for the whole pass.
        let owned = || unsafe { Bound::from_borrowed_ptr(self.py, obj) }.unbind();
        if new {
            counter.ensure_label(index)?;
            self.objects.push(Some(owned()));
        } else if remember && self.same.len() < SAME_OBJECT {
            self.aliases.push(owned());
        }
        if remember && self.same.len() < SAME_OBJECT {
            self.same.push((obj, index));
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
    ///
    /// # Safety
    /// `obj` valid with the GIL held.
    pub(crate) unsafe fn invalid(
        &mut self,
        counter: &mut Counter,
        py: Python<'_>,
        obj: *mut ffi::PyObject,
        position: usize,
    ) {
        counter.invalid(position);
        if self.values.len() < self.max {
            // SAFETY: forwarded from the caller; this takes a new strong reference.
            self.values
                .push(unsafe { Bound::from_borrowed_ptr(py, obj) }.unbind());
        }
    }

    /// Keep `obj`, already counted invalid by the counter, if there is room.
    ///
    /// # Safety
    /// `obj` valid with the GIL held.
    pub(crate) unsafe fn kept(&mut self, py: Python<'_>, obj: *mut ffi::PyObject) {
        if self.values.len() < self.max {
            // SAFETY: forwarded from the caller; this takes a new strong reference.
            self.values
                .push(unsafe { Bound::from_borrowed_ptr(py, obj) }.unbind());
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
        let item = list_item(timestamps, position)?;
        // SAFETY: `item` is a borrowed reference from the list; the bytes are used by
        // `classify` before anything else can run Python code.
        let index = match unsafe { value(item) } {
            Value::Text(bytes) => match counter.classify(bytes, position) {
                Classified::Count(index) => Some(index),
                Classified::Invalid => {
                    // SAFETY: `item` is still borrowed from the list.
                    unsafe { examples.kept(py, item) };
                    None
                }
                Classified::Other => None,
            },
            Value::Nothing => {
                counter.missing();
                None
            }
            Value::Unencodable | Value::Other => {
                // SAFETY: `item` is still borrowed from the list.
                unsafe { examples.invalid(&mut counter, py, item, position) };
                None
            }
        };
        if let Some(index) = index {
            let label = match categories {
                Some(categories) => {
                    let category = list_item(categories, position)?;
                    // SAFETY: borrowed from the live categories list, GIL held.
                    unsafe { labels.index(&mut counter, category)? }
                }
                None => 0,
            };
            counter.count_at(index, label);
        }
    }
    let (tally, order) = counter.finish(categories.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
