//! Counting a list of records (docs/design.md §3, §7): a record is a dict (or subclass), read
//! directly like `dict.get`, or any object with a mapping `get`. Only the binding module
//! (`lib.rs`) calls this.
//!
//! Every record and every value looked up is an owned reference (issue 10), so a key's
//! `__eq__`/`__hash__` or a mapping's `get` may mutate or free the list, the record or the
//! value without anything here reading freed memory. A list that changes size meanwhile
//! is an error (`source::changed_size`), as in the pure-Python loop.
//!
//! One measured exception to pyo3's safe API (issue 10: ~12% fewer instructions per
//! record on `CPython` 3.11-3.13): records of one list nearly always have their keys in the
//! same order, so for an exact `dict` each field remembers the entry position it had in
//! the last dict and first reads that entry with `PyDict_Next`; only if that entry's key
//! is not the field's does the ordinary lookup run. It is used only on the versions it
//! was measured and reviewed on ([`HINTED_VERSIONS`]); any other version the abi3 wheel
//! loads on takes the ordinary lookup.

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString};

use crate::bucket::{digits_at_least, Classified, Counter};
use crate::source::{list_item, same_size, value, Categories, Counted, Examples, Failure, Value};

/// `CPython` minor versions (3.x) whose `PyDict_Next` the position hint was checked
/// against: it bounds-checks any position against the dict it is given (out of range, or
/// negative: returns 0), runs no Python code, and returns borrowed pointers.
const HINTED_VERSIONS: std::ops::RangeInclusive<u8> = 11..=13;

/// Whether this interpreter is one the position hint was checked on.
fn hints_supported(py: Python<'_>) -> bool {
    let version = py.version_info();
    version.major == 3 && HINTED_VERSIONS.contains(&version.minor)
}

/// How a record's fields are looked up.
pub struct RecordFields<'py> {
    /// Timestamp fields, tried in order: the first whose value is not absent, `None` or
    /// `""` decides the record.
    pub fields: Vec<Bound<'py, PyString>>,
    pub category: Option<Bound<'py, PyString>>,
    /// Error rules (`models.ErrorRule`), any of which makes a counted record an error;
    /// `None`: errors are not counted.
    pub errors: Option<Vec<ErrorRule<'py>>>,
}

/// One way a record counts as an error: its `field` holds a `str` equal to one of
/// `values`, or, with `at_least`, a whole number >= it (an `int` that is not a `bool`,
/// or a `str` of ASCII digits only).
pub struct ErrorRule<'py> {
    pub field: Bound<'py, PyString>,
    pub values: Vec<Box<[u8]>>,
    pub at_least: Option<i64>,
}

impl ErrorRule<'_> {
    /// Whether `found` (the field's value) matches. Comparing an `int` is Python's own
    /// `>=`, which may run an `int` subclass's method: the value is an owned reference.
    fn matches(&self, found: &Bound<'_, PyAny>) -> PyResult<bool> {
        match value(found) {
            Value::Text(text) => Ok(self.values.iter().any(|v| v.as_ref() == text)
                || self.at_least.is_some_and(|n| digits_at_least(text, n))),
            Value::Nothing | Value::Unencodable => Ok(false),
            Value::Other => match self.at_least {
                Some(n) if found.is_instance_of::<PyInt>() && !found.is_instance_of::<PyBool>() => {
                    found.ge(n)
                }
                _ => Ok(false),
            },
        }
    }
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
    /// Position hints are used at all (see [`HINTED_VERSIONS`]).
    hints: bool,
}

impl<'py> DictKey<'py> {
    fn new(key: &Bound<'py, PyString>, hints: bool) -> Self {
        Self {
            key: key.clone(),
            hint: -1,
            aliases: Vec::with_capacity(ALIASES),
            next_alias: 0,
            hits: 0,
            searched: 0,
            hints,
        }
    }

    fn is_key(&self, key: *mut ffi::PyObject) -> bool {
        key == self.key.as_ptr() || self.aliases.iter().any(|a| a.as_ptr() == key)
    }

    /// `dict.get(key)` for an exact `dict`, owned.
    #[inline]
    fn get(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.hint >= 0 {
            let mut pos = self.hint;
            let mut key = std::ptr::null_mut();
            let mut found = std::ptr::null_mut();
            // SAFETY: `dict` is a live dict (the caller holds a strong reference) and the
            // thread is attached. `hint >= 0` only on HINTED_VERSIONS, whose PyDict_Next
            // bounds-checks `pos` against this dict's own entries (another dict's
            // position is just an index that may be out of range: then it returns 0) and
            // runs no Python code. `key` is only compared by address with objects we hold
            // strong references to, and `found`, borrowed from the dict, becomes a strong
            // reference before anything else runs; after that, Python code that mutates
            // or frees the dict cannot free it.
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
            if self.hints && self.searched < SEARCHES.saturating_add(self.hits / HITS_PER_SEARCH) {
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
            // SAFETY: as in `get` (a live dict, a position PyDict_Next itself returned,
            // borrowed results); `entry` is only compared by address with `found`, which
            // we hold, and `key` becomes a strong reference before anything else runs.
            // Should a comparison below run Python code that changes the dict, the next
            // call is still bounds-checked against the dict as it is then.
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
            // An exact `str` with the same characters is what the dict's own lookup
            // would have matched (a dict never holds two equal keys).
            let same = key
                .cast_exact::<PyString>()
                .is_ok_and(|k| matches!((k.to_str(), self.key.to_str()), (Ok(a), Ok(b)) if a == b));
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
    /// An exact `dict`: position hints apply.
    ExactDict(&'a Bound<'py, PyDict>),
    /// A dict subclass: read directly, like `dict.get` (no `__missing__`, no `get`).
    Dict(&'a Bound<'py, PyDict>),
    /// Any other object with a `get` attribute: called.
    Mapping(&'a Bound<'py, PyAny>),
}

impl<'py> Record<'_, 'py> {
    /// The value under `key`, owned (`None`: absent, for a dict).
    #[inline]
    fn get(&self, key: &mut DictKey<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match self {
            Self::ExactDict(dict) => key.get(dict),
            Self::Dict(dict) => dict.get_item(&key.key),
            Self::Mapping(mapping) => mapping
                .call_method1(intern!(mapping.py(), "get"), (&key.key,))
                .map(Some),
        }
    }
}

/// Whether a counted record matches any error rule (looked up in order, first match wins,
/// like the pure-Python loop).
fn is_error<'py>(
    record: &Record<'_, 'py>,
    rules: &mut [(DictKey<'py>, &ErrorRule<'py>)],
) -> PyResult<bool> {
    for (key, rule) in rules.iter_mut() {
        if let Some(found) = record.get(key)? {
            if rule.matches(&found)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
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
    let hints = hints_supported(py);
    let mut keys: Vec<DictKey> = fields
        .fields
        .iter()
        .map(|f| DictKey::new(f, hints))
        .collect();
    let mut category = fields.category.as_ref().map(|f| DictKey::new(f, hints));
    let mut rules: Option<Vec<(DictKey, &ErrorRule)>> = fields.errors.as_ref().map(|rules| {
        rules
            .iter()
            .map(|rule| (DictKey::new(&rule.field, hints), rule))
            .collect()
    });
    let mut labels = Categories::new(py);
    let mut examples = Examples {
        max: counter.max_examples(),
        values: Vec::new(),
    };
    for position in 0..n {
        let item = list_item(records, position, "records")?;
        let record = if let Ok(dict) = item.cast_exact::<PyDict>() {
            Record::ExactDict(dict)
        } else if let Ok(dict) = item.cast::<PyDict>() {
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
        if let Some(rules) = &mut rules {
            if is_error(&record, rules)? {
                counter.count_error_at(index, label);
            }
        }
    }
    same_size(records, n, "records")?;
    let (tally, order) = counter.finish(fields.category.is_some());
    let keys = labels.keys(&order);
    Ok((tally, keys, examples.values))
}
