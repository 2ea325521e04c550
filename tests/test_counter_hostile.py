"""Hostile inputs for both counting loops (issue 10): Python code that runs while a list is
being counted (a label's `encode`, a key's `__eq__`/`__hash__`, a mapping's `get`) and
mutates or frees the lists, the records, the values and the labels.

Each test states one expected outcome and runs it against both backends, so their results
are identical by construction. CI also runs this file under `PYTHONMALLOC=debug`, where a
read of freed memory fails loudly (the use-after-free this file was written for crashed
the extension with SIGSEGV/SIGBUS), and under valgrind.
"""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metrics_agg import count_buckets, count_records

W0 = datetime(2024, 5, 7, 0, 0, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)
CHANGED = "changed size during counting"


def fresh(text: str) -> str:
    """An equal `str` that is a new object (not interned, not a shared literal)."""
    return "".join(list(text))


def stamp(minute: int) -> str:
    return fresh(f"2024-05-07T00:{minute:02d}:00Z")


class Surrogate(str):
    """A label with a lone surrogate (no UTF-8 form) whose `encode` frees its containers."""

    victims: list[Any]
    calls: int = 0

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        type(self).calls += 1
        for victim in self.victims:
            victim.clear()
        gc.collect()
        return str.encode(self, *args, **kwargs)


def test_label_encode_that_frees_the_categories_is_never_called(backend: str) -> None:
    Surrogate.calls = 0
    labels: list[object] = [Surrogate(fresh("lab\ud800el"))]
    Surrogate.victims = [labels]
    r = count_buckets([stamp(1)], W0, W1, sizes=(60,), categories=labels, backend=backend)
    keys = list(r.category_counts)
    assert keys == ["lab\ud800el"] and type(keys[0]) is str  # exact str, same characters
    assert r.category_counts["lab\ud800el"] == {60: [1]}
    assert Surrogate.calls == 0
    Surrogate.victims = []


def test_label_encode_that_replaces_the_record_value_is_never_called(backend: str) -> None:
    Surrogate.calls = 0
    record: dict[str, object] = {"createdAt": stamp(2), "kind": Surrogate(fresh("k\udc00"))}
    Surrogate.victims = [record]
    r = count_records([record], W0, W1, category_field="kind", sizes=(60,), backend=backend)
    assert r.category_counts == {"k\udc00": {60: [1]}}
    assert Surrogate.calls == 0
    Surrogate.victims = []


class Meddler(str):
    """A label whose `__hash__`/`__eq__` clear the categories list when called."""

    victims: list[list[object]]
    calls: int = 0

    def __hash__(self) -> int:
        type(self).calls += 1
        for victim in self.victims:
            victim.clear()
        return 0

    def __eq__(self, other: object) -> bool:
        type(self).calls += 1
        for victim in self.victims:
            victim.clear()
        return False


def test_subclass_labels_are_grouped_by_characters_without_their_methods(backend: str) -> None:
    Meddler.calls = 0
    labels: list[object] = [Meddler("a"), "a", Meddler(fresh("b")), Meddler("a"), None]
    Meddler.victims = [labels]
    texts = [stamp(1), stamp(2), stamp(3), stamp(4), stamp(5)]
    r = count_buckets(texts, W0, W1, sizes=(60,), categories=labels, backend=backend)
    assert r.category_counts == {"a": {60: [3]}, "b": {60: [1]}, None: {60: [1]}}
    assert all(type(k) is str for k in r.category_counts if k is not None)
    assert Meddler.calls == 0 and len(labels) == 5
    Meddler.victims = []


class Collider:
    """A dict key with the hash of "createdAt": a lookup of that field compares it.

    Once armed, its next comparison runs `action`; it never equals anything else.
    """

    def __init__(self, action: Any) -> None:
        self.action = action
        self.armed = False

    def __hash__(self) -> int:
        return hash("createdAt")

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if self.armed:
            self.armed = False
            self.action()
        return False


def hostile_record(action: Any, **fields: object) -> dict[object, object]:
    """A record whose "createdAt" lookup first compares an armed `Collider`."""
    collider = Collider(action)
    record: dict[object, object] = {collider: 1}  # probed before the real key
    record.update(fields)
    collider.armed = True
    return record


def test_key_eq_that_replaces_the_value_being_looked_up(backend: str) -> None:
    def replace() -> None:
        record["createdAt"] = stamp(7)  # the old value's last reference goes
        gc.collect()

    record = hostile_record(replace, createdAt=stamp(3), kind=fresh("k"))
    r = count_records([record], W0, W1, category_field="kind", sizes=(60,), backend=backend)
    assert (r.processed, r.missing, r.invalid, r.outside_window) == (1, 0, 0, 0)
    assert r.category_counts == {"k": {60: [1]}}
    assert record["createdAt"] == "2024-05-07T00:07:00Z"


def test_key_eq_that_clears_the_records_list_raises(backend: str) -> None:
    records: list[object] = [{"createdAt": stamp(0)}]
    records.append(hostile_record(records.clear, createdAt=stamp(1)))
    records.append({"createdAt": stamp(2)})
    with pytest.raises(RuntimeError, match=f"records {CHANGED}"):
        count_records(records, W0, W1, backend=backend)


def test_key_eq_that_frees_the_record_being_read_raises(backend: str) -> None:
    records: list[object] = []
    # The list holds the only reference to the record; `__eq__` drops it mid-lookup.
    records.append(hostile_record(records.clear, createdAt=stamp(1), kind=fresh("k")))
    with pytest.raises(RuntimeError, match=f"records {CHANGED}"):
        count_records(records, W0, W1, category_field="kind", backend=backend)


def test_key_eq_that_raises_propagates(backend: str) -> None:
    def boom() -> None:
        raise KeyError("from __eq__")

    records = [{"createdAt": stamp(0)}, hostile_record(boom, createdAt=stamp(1))]
    with pytest.raises(KeyError, match="from __eq__"):
        count_records(records, W0, W1, backend=backend)


class Getter:
    """A non-dict mapping whose `get` runs `action` once, then answers from `data`."""

    def __init__(self, data: dict[str, object], action: Any) -> None:
        self.data = data
        self.action = action

    def get(self, key: str, default: object = None) -> object:
        action, self.action = self.action, None
        if action is not None:
            action()
            gc.collect()
        return self.data.get(key, default)


def test_mapping_get_that_shrinks_the_list_raises(backend: str) -> None:
    records: list[object] = [{"createdAt": stamp(0)}]
    records.append(Getter({"createdAt": stamp(1)}, records.pop))
    records.append({"createdAt": stamp(2)})
    with pytest.raises(RuntimeError, match=f"records {CHANGED}"):
        count_records(records, W0, W1, backend=backend)


def test_mapping_get_that_grows_the_list_raises(backend: str) -> None:
    records: list[object] = []
    records += [Getter({"createdAt": stamp(1)}, lambda: records.append({})), {}]
    with pytest.raises(RuntimeError, match=f"records {CHANGED}"):
        count_records(records, W0, W1, backend=backend)


def test_mapping_get_that_frees_its_own_data(backend: str) -> None:
    data: dict[str, object] = {"createdAt": stamp(4), "kind": Surrogate(fresh("s\ud800"))}
    Surrogate.victims = []

    class Vanishing:
        """Each value it returns is the caller's only reference (its dict lets go)."""

        def get(self, key: str, default: object = None) -> object:
            value = data.pop(key, default)
            gc.collect()
            return value

    r = count_records(
        [Vanishing(), Vanishing()], W0, W1, category_field="kind", sizes=(60,), backend=backend
    )
    assert (r.processed, r.missing) == (1, 1)
    assert r.category_counts == {"s\ud800": {60: [1]}}


class StrictDict(dict[str, object]):
    """A dict subclass whose own lookups all raise: the counters read it like `dict.get`."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("get called")

    def __getitem__(self, key: str) -> Any:
        raise AssertionError("__getitem__ called")

    def __missing__(self, key: str) -> Any:
        raise AssertionError("__missing__ called")


def test_dict_subclasses_are_read_directly(backend: str) -> None:
    records = [StrictDict(createdAt=stamp(1), kind="a"), StrictDict(updatedAt=stamp(2))]
    r = count_records(
        records,
        W0,
        W1,
        fields=("createdAt", "updatedAt"),
        category_field="kind",
        sizes=(60,),
        backend=backend,
    )
    assert (r.processed, r.missing) == (2, 0)
    assert r.category_counts == {"a": {60: [1]}, None: {60: [1]}}


class EqualKey(str):
    """A `str` subclass key equal to "createdAt" (same hash), with its own `__eq__`."""

    def __hash__(self) -> int:
        return hash("createdAt")

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)


def test_keys_equal_but_not_identical_are_found(backend: str) -> None:
    # Many records of one shape teach the extension each key's entry position; equal
    # keys of other identities (a fresh str, a str subclass) must still be found.
    records: list[dict[Any, object]] = [{"id": i, "createdAt": stamp(i % 60)} for i in range(200)]
    records += [
        {"id": 1, fresh("createdAt"): stamp(10)},
        {"id": 2, EqualKey("createdAt"): stamp(11)},
        {"id": 3, "created": stamp(12)},  # a different key: missing
        {"id": 4, fresh("createdAt"): stamp(13)},
    ]
    r = count_records(records, W0, W1, sizes=(60,), backend=backend)
    assert (r.processed, r.missing, r.invalid) == (203, 1, 0)


class Impostor:
    """Not a `str`, but claims to be one through `__class__`."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return str

    def __getitem__(self, key: object) -> str:
        raise AssertionError("read as a str")


def test_objects_that_only_claim_to_be_str_are_invalid(backend: str) -> None:
    impostor = Impostor()
    r = count_buckets(
        [impostor, stamp(1)], W0, W1, sizes=(60,), categories=[None, impostor], backend=backend
    )
    assert (r.processed, r.invalid) == (1, 1)
    assert r.category_counts == {None: {60: [1]}} and r.invalid_examples


def test_str_subclass_timestamps_count_by_their_characters(backend: str) -> None:
    class Liar(str):
        def __str__(self) -> str:
            return "not a timestamp"

        def __getitem__(self, key: Any) -> str:
            raise AssertionError("sliced")

        def __len__(self) -> int:
            return 0

    r = count_buckets([Liar(stamp(9)), Liar("")], W0, W1, sizes=(60,), backend=backend)
    assert (r.processed, r.missing, r.invalid) == (1, 1, 0)


def test_records_of_changing_shapes_read_the_right_entries(backend: str) -> None:
    # The extension remembers where each field sat in the last dict: records whose keys
    # move (other orders, deleted entries, a key-sharing class instance dict) must still
    # be read by key.
    class Shared:
        def __init__(self, minute: int) -> None:
            self.createdAt = stamp(minute)
            self.kind = "shared"

    shaped: list[object] = [{"createdAt": stamp(m % 60), "kind": "a"} for m in range(100)]
    moved: dict[str, object] = {"kind": "b", "createdAt": stamp(1)}
    holed: dict[str, object] = {"x": 1, "y": 2, "createdAt": stamp(2), "kind": "c"}
    del holed["x"], holed["y"]  # entries before the key are now deleted slots
    shaped += [moved, holed, vars(Shared(3)), {"kind": "d"}, {"createdAt": stamp(4)}]
    r = count_records(shaped, W0, W1, category_field="kind", sizes=(60,), backend=backend)
    assert (r.processed, r.missing) == (104, 1)
    assert r.category_counts == {
        "a": {60: [100]},
        "b": {60: [1]},
        "c": {60: [1]},
        "shared": {60: [1]},
        None: {60: [1]},
    }
