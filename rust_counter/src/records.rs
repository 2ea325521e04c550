//! Counting a list of records (docs/design.md §3, §7): a record is a dict (or subclass), read
//! directly like `dict.get`, or any object with a mapping `get`. Only the binding module
//! (`lib.rs`) calls this.
//!
//! Safe API only (issue 10): every record and every value looked up is an owned
//! reference, so a key's `__eq__`/`__hash__` or a mapping's `get` may mutate or free the
//! list, the record or the value without anything here reading freed memory. A list
//! that changes size meanwhile is an error (`source::changed_size`), as in the
//! pure-Python loop.

use pyo3::ffi;
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

/// Key objects other than the field's own that are known to equal it (kept per field).
const ALIASES: usize = 4;
/// Entry-position searches allowed up front per field and pass.
const SEARCHES: u32 = 8;
/// Hits through the remembered position that earn one more search.
const HITS_PER_SEARCH: u32 = 64;

/// One field name as a dict key, with the entry position it had in the last dict.
struct DictKey<'py> {
    key: Bound<'py, PyString>,
    /// `PyDict_Next` position of this key's entry in the last dict searched, or -1.
    hint: ffi::Py_ssize_t,
    /// Exact `str` keys other than `key` with the same characters (strong references, so
    /// an address here always names the same object).
    aliases: Vec<Py<PyAny>>,
    next_alias: usize,
    hits: u32,
    searched: u32,
}

impl<'py> DictKey<'py> {
    fn new(key: &Bound<'py, PyString>) -> Self {
        Self {
            key: key.clone(),
            hint: -1,
            aliases: Vec::with_capacity(ALIASES),
            next_alias: 0,
            hits: 0,
            searched: 0,
        }
    }

    fn is_key(&self, key: *mut ffi::PyObject) -> bool {
        key == self.key.as_ptr() || self.aliases.iter().any(|a| a.as_ptr() == key)
    }

    #[inline]
    fn get(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.hint >= 0 && dict.is_exact_instance_of::<PyDict>() {
            let mut pos = self.hint;
            let mut key = std::ptr::null_mut();
            let mut found = std::ptr::null_mut();
            // SAFETY: `dict` is a live dict (we hold a strong reference) and the thread is
            // attached. PyDict_Next bounds-checks `pos` against this dict (3.11-3.13:
            // out of range returns 0) and returns borrowed pointers; `key` is only
            // compared by address with objects we hold, and `found` is turned into a
            // strong reference before anything else runs.
            unsafe {
                if ffi::PyDict_Next(dict.as_ptr(), &raw mut pos, &raw mut key, &raw mut found) != 0
                    && self.is_key(key)
                {
                    self.hits = self.hits.saturating_add(1);
                    return Ok(Some(Bound::from_borrowed_ptr(dict.py(), found)));
                }
            }
        }
        self.lookup(dict)
    }

    #[inline(never)]
    fn lookup(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let found = dict.get_item(&self.key)?;
        self.hint = -1;
        if let Some(found) = &found {
            if dict.is_exact_instance_of::<PyDict>()
                && self.searched < SEARCHES.saturating_add(self.hits / HITS_PER_SEARCH)
            {
                self.searched += 1;
                self.learn(dict, found);
            }
        }
        Ok(found)
    }

    /// Remember where the entry holding `found` sits, if this key owns it.
    fn learn(&mut self, dict: &Bound<'py, PyDict>, found: &Bound<'py, PyAny>) {
        let py = dict.py();
        let mut pos: ffi::Py_ssize_t = 0;
        loop {
            let before = pos;
            let mut key = std::ptr::null_mut();
            let mut entry = std::ptr::null_mut();
            // SAFETY: as in `get`: a live dict, bounds-checked positions, borrowed
            // results turned into a strong reference at once.
            let key = unsafe {
                if ffi::PyDict_Next(dict.as_ptr(), &raw mut pos, &raw mut key, &raw mut entry) == 0
                {
                    return;
                }
                if entry != found.as_ptr() {
                    continue;
                }
                Bound::from_borrowed_ptr(py, key)
            };
            if key.is(&self.key) {
                self.hint = before;
                return;
            }
            let same = key
                .cast_exact::<PyString>()
                .is_ok_and(|k| k.to_str().ok() == self.key.to_str().ok());
            if same {
                self.hint = before;
                let alias = key.unbind();
                if self.aliases.len() < ALIASES {
                    self.aliases.push(alias);
                } else {
                    self.aliases[self.next_alias] = alias;
                    self.next_alias = (self.next_alias + 1) % ALIASES;
                }
                return;
            }
        }
    }
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
    fn get(&self, key: &mut DictKey<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self {
            Self::Dict(dict) => key.get(dict),
            Self::Mapping(mapping) => mapping
                .call_method1(intern!(mapping.py(), "get"), (&key.key,))
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
    let mut keys: Vec<DictKey> = fields.fields.iter().map(DictKey::new).collect();
    let mut category = fields.category.as_ref().map(DictKey::new);
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
        for key in &mut keys {
            let found = record.get(key)?;
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
        let label = match &mut category {
            Some(key) => match record.get(key)? {
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
