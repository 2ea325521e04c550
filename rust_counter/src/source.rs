//! Reading the caller's Python list in place (DESIGN §3, issue 2): items are borrowed
//! from the list, a `str`'s UTF-8 is borrowed from the object (abi3
//! `PyUnicode_AsUTF8AndSize`, which for ASCII strings is the object's own buffer), and no
//! Python object is created per item. Only the binding module (`lib.rs`) calls this.

use pyo3::exceptions::PyIndexError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

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
enum Value<'a> {
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
unsafe fn value<'a>(obj: *mut ffi::PyObject) -> Value<'a> {
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
fn list_item(list: &Bound<'_, PyList>, index: usize) -> PyResult<*mut ffi::PyObject> {
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

/// How many known label objects are compared by identity before reading bytes.
const SAME_OBJECT_SCAN: usize = 4;

/// Maps category strings to the counter's label indexes, keeping the first object seen
/// for each label so it can be handed back as the result's key.
struct Categories<'py> {
    py: Python<'py>,
    labels: Labels,
    /// `objects[label]`; index 0 is "no category".
    objects: Vec<Option<Py<PyAny>>>,
}

impl<'py> Categories<'py> {
    fn new(py: Python<'py>) -> Self {
        Self {
            py,
            labels: Labels::default(),
            objects: vec![None],
        }
    }

    /// Label index of a category value (0 unless it is a `str`).
    ///
    /// # Safety
    /// As [`value`]: `obj` valid, GIL held.
    unsafe fn index(
        &mut self,
        counter: &mut Counter,
        obj: *mut ffi::PyObject,
    ) -> Result<usize, Failure> {
        // The same object as a known label (interned or reused strings): no byte compare.
        if let Some(index) = self
            .objects
            .iter()
            .take(SAME_OBJECT_SCAN)
            .position(|known| known.as_ref().is_some_and(|k| k.as_ptr() == obj))
        {
            return Ok(index);
        }
        // SAFETY: forwarded from the caller.
        let key: Vec<u8>;
        let bytes: &[u8] = match unsafe { value(obj) } {
            Value::Text(bytes) => bytes,
            Value::Unencodable => {
                // A label with lone surrogates: key it by its lossless surrogatepass form,
                // which is never valid UTF-8 and so never equals another label's key.
                // SAFETY: `obj` is a valid str with the GIL held; the result is owned.
                let any = unsafe { Bound::from_borrowed_ptr(self.py, obj) };
                let encoded = any.call_method1("encode", ("utf-8", "surrogatepass"))?;
                key = encoded.extract::<Vec<u8>>()?;
                &key
            }
            Value::Nothing | Value::Other => return Ok(0),
        };
        let (index, new) = self.labels.index(bytes);
        if new {
            counter.ensure_label(index)?;
            // SAFETY: `obj` is valid with the GIL held; this takes a new strong reference.
            self.objects.push(Some(
                unsafe { Bound::from_borrowed_ptr(self.py, obj) }.unbind(),
            ));
        }
        Ok(index)
    }

    /// Category keys in the order of the tally's `category_counts`.
    fn keys(&self, order: &[usize]) -> Vec<Option<Py<PyAny>>> {
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
struct Examples {
    max: usize,
    values: Vec<Py<PyAny>>,
}

impl Examples {
    /// Count `obj` as invalid at `position` and keep it if there is room.
    ///
    /// # Safety
    /// `obj` valid with the GIL held.
    unsafe fn invalid(
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
    unsafe fn kept(&mut self, py: Python<'_>, obj: *mut ffi::PyObject) {
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

/// How a record's fields are looked up.
pub struct RecordFields<'py> {
    /// Timestamp fields, tried in order: the first whose value is not absent, `None` or
    /// `""` decides the record.
    pub fields: Vec<Bound<'py, PyString>>,
    pub category: Option<Bound<'py, PyString>>,
}

/// Result of looking a key up in one record.
enum Lookup {
    /// Borrowed from a dict (valid until Python code runs).
    Borrowed(*mut ffi::PyObject),
    /// Returned by a mapping's `get` (we own it).
    Owned(Py<PyAny>),
}

impl Lookup {
    fn ptr(&self) -> *mut ffi::PyObject {
        match self {
            Self::Borrowed(ptr) => *ptr,
            Self::Owned(obj) => obj.as_ptr(),
        }
    }
}

/// `record[key]` for a dict (absent -> `None`), or `record.get(key)` for another mapping.
fn lookup(record: &Bound<'_, PyAny>, is_dict: bool, key: &Bound<'_, PyString>) -> PyResult<Lookup> {
    if is_dict {
        // SAFETY: `record` is a live dict (checked by the caller) and `key` a live str,
        // GIL held. The result is borrowed from the dict, which `record` keeps alive.
        let found = unsafe { ffi::PyDict_GetItemWithError(record.as_ptr(), key.as_ptr()) };
        if found.is_null() {
            if let Some(error) = PyErr::take(record.py()) {
                return Err(error);
            }
            // SAFETY: Py_None is a static, immortal object.
            return Ok(Lookup::Borrowed(unsafe { ffi::Py_None() }));
        }
        Ok(Lookup::Borrowed(found))
    } else {
        Ok(Lookup::Owned(record.call_method1("get", (key,))?.unbind()))
    }
}

/// Count a list of records (dicts, or any objects with a mapping `get`).
pub fn count_records(
    records: &Bound<'_, PyList>,
    fields: &RecordFields<'_>,
    mut counter: Counter,
) -> Result<Counted, Failure> {
    let py = records.py();
    let mut labels = Categories::new(py);
    let mut examples = Examples {
        max: counter.max_examples(),
        values: Vec::new(),
    };
    // A record's own `get` could shrink the list: `list_item` then raises IndexError.
    for position in 0..records.len() {
        let item = list_item(records, position)?;
        // SAFETY: `item` is a borrowed reference from the list; we take a strong one so
        // the record outlives any Python code its lookups run.
        let record = unsafe { Bound::from_borrowed_ptr(py, item) };
        // SAFETY: `item` is valid with the GIL held.
        let is_dict = unsafe { ffi::PyDict_CheckExact(item) != 0 || ffi::PyDict_Check(item) != 0 };
        if !is_dict && !record.hasattr("get")? {
            // SAFETY: `item` is kept alive by `record`.
            unsafe { examples.invalid(&mut counter, py, item, position) };
            continue;
        }
        let mut index = None;
        let mut decided = false;
        for field in &fields.fields {
            let found = lookup(&record, is_dict, field)?;
            // SAFETY: `found` is alive (borrowed from the record, or owned) and no Python
            // code runs before `classify` has finished with the bytes.
            match unsafe { value(found.ptr()) } {
                Value::Nothing | Value::Text([]) => continue,
                Value::Text(bytes) => match counter.classify(bytes, position) {
                    Classified::Count(at) => index = Some(at),
                    // SAFETY: `found` is alive (see above).
                    Classified::Invalid => unsafe { examples.kept(py, found.ptr()) },
                    Classified::Other => {}
                },
                // SAFETY: `found` is alive (see above).
                Value::Unencodable | Value::Other => unsafe {
                    examples.invalid(&mut counter, py, found.ptr(), position);
                },
            }
            decided = true;
            break;
        }
        if !decided {
            counter.missing();
        }
        if let Some(index) = index {
            let label = match &fields.category {
                Some(field) => {
                    let found = lookup(&record, is_dict, field)?;
                    // SAFETY: as above; `found` stays alive across this call.
                    unsafe { labels.index(&mut counter, found.ptr())? }
                }
                None => 0,
            };
            counter.count_at(index, label);
        }
    }
    let (tally, order) = counter.finish(fields.category.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
