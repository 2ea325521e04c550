//! Counting a list of records (docs/design.md §3, §7): a record is a dict, read directly like
//! `dict.get`, or any object with a mapping `get`. Only the binding module (`lib.rs`)
//! calls this.
//!
//! A dict lookup costs ~120 instructions on `CPython` 3.11, about half the parse, and a
//! record needs two (timestamp and category). Records of one list nearly always have
//! their keys in the same order (one literal, one JSON shape), so each field remembers
//! where it sat in the last dict and first reads that entry with `PyDict_Next` (~30
//! instructions, no hashing or probing, runs no Python code); only if that entry's key is
//! not the field's does the ordinary lookup run.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString};

use crate::bucket::{Classified, Counter};
use crate::source::{list_item, value, Categories, Counted, Examples, Failure, Value};

/// How a record's fields are looked up.
pub struct RecordFields<'py> {
    /// Timestamp fields, tried in order: the first whose value is not absent, `None` or
    /// `""` decides the record.
    pub fields: Vec<Bound<'py, PyString>>,
    pub category: Option<Bound<'py, PyString>>,
}

/// Key objects other than the field's own that are known to equal it (kept per field).
const ALIASES: usize = 4;
/// Entry-position searches allowed up front per field and pass.
const SEARCHES: u32 = 8;
/// Hits through the remembered position that earn one more search.
const HITS_PER_SEARCH: u32 = 64;

/// One field name as a dict key, with the position it had in the last dict.
///
/// An entry found at the remembered position answers the lookup only when its key *is*
/// the field's key object or one of `aliases`: exact `str`s with the same characters,
/// which is what the dict's own lookup would match (a dict never holds two keys that
/// compare equal).
struct DictKey {
    /// The interned field name; kept alive by the caller's `RecordFields`.
    key: *mut ffi::PyObject,
    /// Entry position of this key in the last dict it was searched in, or -1.
    hint: ffi::Py_ssize_t,
    /// Pointers of `held`, compared by identity (null: empty slot).
    aliases: [*mut ffi::PyObject; ALIASES],
    /// Strong references that keep each alias pointer from being reused meanwhile.
    held: [Option<Py<PyAny>>; ALIASES],
    next_alias: usize,
    /// Lookups answered at the remembered position.
    hits: u32,
    /// Position searches so far: at most `SEARCHES` plus one per `HITS_PER_SEARCH` hits,
    /// so records of mixed shapes do not pay a scan each.
    searched: u32,
}

impl DictKey {
    fn new(key: &Bound<'_, PyString>) -> Self {
        Self {
            key: key.as_ptr(),
            hint: -1,
            aliases: [std::ptr::null_mut(); ALIASES],
            held: Default::default(),
            next_alias: 0,
            hits: 0,
            searched: 0,
        }
    }

    /// `dict.get(key)`, borrowed (`None` when absent).
    ///
    /// # Safety
    /// `dict` a live `dict` (or subclass) with the GIL held; the result is borrowed from
    /// it: use it before any Python code can run.
    #[inline]
    unsafe fn get(
        &mut self,
        py: Python<'_>,
        dict: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject> {
        if self.hint >= 0 {
            let mut pos = self.hint;
            let mut key = std::ptr::null_mut();
            let mut found = std::ptr::null_mut();
            // SAFETY: `dict` is a live dict, GIL held. `pos` is a position PyDict_Next
            // accepted while scanning another dict; it bounds-checks every position
            // (3.11-3.14: out of range returns 0), returns borrowed pointers and runs no
            // Python code. Whatever entry it lands on is used only if its key matches.
            let live =
                unsafe { ffi::PyDict_Next(dict, &raw mut pos, &raw mut key, &raw mut found) };
            if live != 0 && (key == self.key || self.aliases.contains(&key)) {
                self.hits = self.hits.saturating_add(1);
                return Ok(found);
            }
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.lookup(py, dict) }
    }

    /// [`DictKey::get`] when the remembered position did not hold this key.
    ///
    /// # Safety
    /// As [`DictKey::get`].
    #[inline(never)]
    unsafe fn lookup(
        &mut self,
        py: Python<'_>,
        dict: *mut ffi::PyObject,
    ) -> PyResult<*mut ffi::PyObject> {
        // SAFETY: as the caller guarantees; the key is alive.
        let found = unsafe { dict_get(py, dict, self.key)? };
        if self.searched < SEARCHES.saturating_add(self.hits / HITS_PER_SEARCH) {
            self.searched += 1;
            // SAFETY: `dict` is still live (no Python code ran since the lookup
            // returned) and `found` borrowed from it.
            unsafe { self.learn(py, dict, found) };
        } else {
            self.hint = -1;
        }
        Ok(found)
    }

    /// Remember where the entry holding `found` sits, if this key owns it.
    ///
    /// # Safety
    /// `dict` a live dict, `found` borrowed from it or `None`, GIL held.
    unsafe fn learn(
        &mut self,
        py: Python<'_>,
        dict: *mut ffi::PyObject,
        found: *mut ffi::PyObject,
    ) {
        self.hint = -1;
        // SAFETY: Py_None is a static, immortal object.
        if found == unsafe { ffi::Py_None() } {
            return; // absent (or None, which decides nothing): nothing to remember
        }
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key = std::ptr::null_mut();
        let mut entry = std::ptr::null_mut();
        loop {
            // Remember the position that led to the entry, not arithmetic on it: the
            // value is opaque, but handing it back to PyDict_Next is how it is meant to
            // be used.
            let before = pos;
            // SAFETY: `dict` is a live dict with the GIL held; PyDict_Next runs no Python
            // code, so the dict does not change during the scan.
            if unsafe { ffi::PyDict_Next(dict, &raw mut pos, &raw mut key, &raw mut entry) } == 0 {
                return;
            }
            if entry != found {
                continue;
            }
            if key == self.key {
                self.hint = before;
                return;
            }
            // SAFETY: `key` is borrowed from the live dict; for an exact `str`,
            // PyUnicode_Compare compares characters and runs no Python code.
            let same = unsafe {
                ffi::PyUnicode_CheckExact(key) != 0 && ffi::PyUnicode_Compare(key, self.key) == 0
            };
            if same {
                self.hint = before;
                let slot = self.next_alias;
                self.next_alias = (slot + 1) % ALIASES;
                self.aliases[slot] = key;
                // SAFETY: `key` is valid; this takes a strong reference, so the pointer
                // stays this object's while it is an alias. The one it replaces is an
                // exact `str`, whose release runs no Python code.
                self.held[slot] = Some(unsafe { Bound::from_borrowed_ptr(py, key) }.unbind());
                return;
            }
        }
    }
}

/// `dict[key]`, borrowed (`None` when absent).
///
/// # Safety
/// `dict` must be a live `dict` (or subclass), `key` a live object, the GIL held. The
/// result is borrowed from the dict: use it before any Python code can run.
#[inline]
unsafe fn dict_get(
    py: Python<'_>,
    dict: *mut ffi::PyObject,
    key: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: as the caller guarantees. `PyDict_GetItemWithError` (limited API;
    // `PyDict_GetItemRef` is 3.13+) reads the dict directly, like `dict.get`: no
    // `__missing__`, and no owned reference to release per lookup.
    let found = unsafe { ffi::PyDict_GetItemWithError(dict, key) };
    if !found.is_null() {
        return Ok(found);
    }
    // SAFETY: GIL held. Absent keys are common (the first of several timestamp fields),
    // so look before fetching: `PyErr_Occurred` is a plain read.
    if !unsafe { ffi::PyErr_Occurred() }.is_null() {
        if let Some(error) = PyErr::take(py) {
            return Err(error);
        }
    }
    // SAFETY: Py_None is a static, immortal object.
    Ok(unsafe { ffi::Py_None() })
}

/// `record.get(key)` for a mapping that is not a dict (we own the result).
fn mapping_get(record: &Bound<'_, PyAny>, key: &Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
    Ok(record.call_method1("get", (key,))?.unbind())
}

/// What one timestamp field's value did to its record.
enum Field {
    /// Absent, `None` or `""`: the next field decides.
    Next,
    /// The value decided the record: `Some(minute index)` to count, else nothing to count.
    Decided(Option<usize>),
}

/// Classify one timestamp field's value.
///
/// # Safety
/// `found` valid with the GIL held, and no Python code runs while this reads its bytes.
#[inline]
unsafe fn decide(
    counter: &mut Counter,
    examples: &mut Examples,
    py: Python<'_>,
    found: *mut ffi::PyObject,
    position: usize,
) -> Field {
    // SAFETY: forwarded from the caller.
    match unsafe { value(found) } {
        Value::Nothing | Value::Text([]) => Field::Next,
        Value::Text(bytes) => Field::Decided(match counter.classify(bytes, position) {
            Classified::Count(at) => Some(at),
            Classified::Invalid => {
                // SAFETY: forwarded from the caller.
                unsafe { examples.kept(py, found) };
                None
            }
            Classified::Other => None,
        }),
        Value::Unencodable | Value::Other => {
            // SAFETY: forwarded from the caller.
            unsafe { examples.invalid(counter, py, found, position) };
            Field::Decided(None)
        }
    }
}

/// Count a list of records (dicts, or any objects with a mapping `get`).
///
/// Per dict record: one borrowed item, one read per timestamp field tried, one for the
/// category, and no allocation (docs/design.md §7: within 4x of the standalone loop).
pub fn count_records(
    records: &Bound<'_, PyList>,
    fields: &RecordFields<'_>,
    mut counter: Counter,
) -> Result<Counted, Failure> {
    let py = records.py();
    let mut keys: Vec<DictKey> = fields.fields.iter().map(DictKey::new).collect();
    let mut category = fields.category.as_ref().map(DictKey::new);
    let mut labels = Categories::new(py);
    let mut examples = Examples {
        max: counter.max_examples(),
        values: Vec::new(),
    };
    // A record's own `get` could shrink the list: `list_item` then raises IndexError.
    for position in 0..records.len() {
        let item = list_item(records, position)?;
        // SAFETY: `item` is a borrowed reference from the list; we take a strong one so
        // the record outlives any Python code its lookups run (a key's `__eq__`).
        let record = unsafe { Bound::from_borrowed_ptr(py, item) };
        // SAFETY: `item` is valid with the GIL held.
        let is_dict = unsafe { ffi::PyDict_CheckExact(item) != 0 || ffi::PyDict_Check(item) != 0 };
        let mut index = None;
        let mut decided = false;
        if is_dict {
            for key in &mut keys {
                // SAFETY: `item` is a live dict kept alive by `record`.
                let found = unsafe { key.get(py, item)? };
                // SAFETY: `found` is borrowed from the dict and no Python code runs
                // before `decide` has finished with it.
                if let Field::Decided(at) =
                    unsafe { decide(&mut counter, &mut examples, py, found, position) }
                {
                    index = at;
                    decided = true;
                    break;
                }
            }
        } else if record.hasattr("get")? {
            for field in &fields.fields {
                let found = mapping_get(&record, field)?;
                // SAFETY: we own `found`, and no Python code runs inside `decide`.
                if let Field::Decided(at) =
                    unsafe { decide(&mut counter, &mut examples, py, found.as_ptr(), position) }
                {
                    index = at;
                    decided = true;
                    break;
                }
            }
        } else {
            // SAFETY: `item` is kept alive by `record`.
            unsafe { examples.invalid(&mut counter, py, item, position) };
            continue;
        }
        if !decided {
            counter.missing();
        }
        let Some(index) = index else { continue };
        let label = match (&mut category, &fields.category) {
            (Some(key), _) if is_dict => {
                // SAFETY: as for the timestamp fields above.
                let found = unsafe { key.get(py, item)? };
                // SAFETY: `found` is borrowed from the live dict, GIL held; `index` runs
                // Python code only for a label with lone surrogates, after which it no
                // longer reads `found`.
                unsafe { labels.index(&mut counter, found)? }
            }
            (_, Some(field)) => {
                let found = mapping_get(&record, field)?;
                // SAFETY: we own `found`.
                unsafe { labels.index(&mut counter, found.as_ptr())? }
            }
            _ => 0,
        };
        counter.count_at(index, label);
    }
    let (tally, order) = counter.finish(category.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
