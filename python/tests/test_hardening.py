"""Columns and arguments from misbehaving producers: consumed or malformed Arrow exports,
objects posing as numpy arrays, str subclasses, odd keyword names, dropped errors."""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any

import pytest

import outguard
from conftest import NOW

MAILS = ["a@contoso.com", "b@trial.example", "c@lapsed.example", "d@fabrikam.com"]


# --- Arrow exports handed out twice ------------------------------------------------------------


class CachedArray:
    """Returns the same (after the first import: consumed) capsules every time."""

    def __init__(self, arr: Any) -> None:
        self.pair = arr.__arrow_c_array__()

    def __arrow_c_array__(self, requested_schema: object = None) -> Any:
        return self.pair


class CachedStream:
    def __init__(self, arr: Any) -> None:
        self.cap = arr.__arrow_c_stream__()

    def __arrow_c_stream__(self, requested_schema: object = None) -> Any:
        return self.cap


def test_consumed_array_capsule_is_refused(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    col = CachedArray(pa.array(MAILS))
    first = engine.check_batch([NOW] * 4, col, tenant="contoso")
    assert list(first.code) == list(engine.check_batch([NOW] * 4, MAILS, tenant="contoso").code)
    for _ in range(3):
        with pytest.raises(ValueError, match="already consumed"):
            engine.check_batch([NOW] * 4, col, tenant="contoso")


def test_consumed_stream_capsule_is_refused(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    col = CachedStream(pa.chunked_array([MAILS[:1], MAILS[1:]]))
    engine.check_batch([NOW] * 4, col, tenant="contoso")
    for _ in range(3):
        with pytest.raises(ValueError, match="already consumed"):
            engine.check_batch([NOW] * 4, col, tenant="contoso")


def test_stream_of_an_unread_type_falls_back_before_reading_chunks(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    col = pa.chunked_array([pa.array(MAILS[:2]).dictionary_encode(), pa.array(MAILS[2:]).dictionary_encode()])
    r = engine.check_batch([NOW] * 4, col, tenant="contoso")
    assert list(r.code) == list(engine.check_batch([NOW] * 4, MAILS, tenant="contoso").code)


# --- Arrow arrays made by hand (ctypes) --------------------------------------------------------


class _Schema(ctypes.Structure):
    pass


class _Array(ctypes.Structure):
    pass


_SchemaRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Schema))
_ArrayRelease = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Array))

_Schema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p),
    ("release", _SchemaRelease),
    ("private_data", ctypes.c_void_p),
]
_Array._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.c_void_p),
    ("children", ctypes.c_void_p),
    ("dictionary", ctypes.c_void_p),
    ("release", _ArrayRelease),
    ("private_data", ctypes.c_void_p),
]

_RELEASED: list[str] = []


@_SchemaRelease
def _release_schema(p: Any) -> None:
    _RELEASED.append("schema")
    p.contents.release = _SchemaRelease()


@_ArrayRelease
def _release_array(p: Any) -> None:
    _RELEASED.append("array")
    p.contents.release = _ArrayRelease()


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class Handmade:
    """An `__arrow_c_array__` exporter of an array described field by field."""

    def __init__(self, fmt: bytes, buffers: list[int | None], **fields: int) -> None:
        self.buffers = (ctypes.c_void_p * max(len(buffers), 1))(*buffers)
        self.schema = _Schema(format=fmt, release=_release_schema)
        self.array = _Array(
            length=fields.get("length", 0),
            null_count=fields.get("null_count", 0),
            offset=fields.get("offset", 0),
            n_buffers=fields.get("n_buffers", len(buffers)),
            n_children=fields.get("n_children", 0),
            buffers=ctypes.cast(self.buffers, ctypes.c_void_p),
            release=_release_array,
        )

    def __arrow_c_array__(self, requested_schema: object = None) -> Any:
        return (
            _capsule_new(ctypes.addressof(self.schema), b"arrow_schema", None),
            _capsule_new(ctypes.addressof(self.array), b"arrow_array", None),
        )


def _int64s(values: list[int]) -> tuple[Any, int]:
    buf = (ctypes.c_int64 * len(values))(*values)
    return buf, ctypes.addressof(buf)


def test_handmade_array_is_read(engine: outguard.Engine) -> None:
    buf, addr = _int64s([NOW, NOW + 1, NOW + 2, NOW + 3])
    r = engine.check_batch(Handmade(b"l", [None, addr], length=4), MAILS, tenant="contoso")
    assert list(r.code) == list(engine.check_batch([NOW + i for i in range(4)], MAILS, tenant="contoso").code)
    del buf


@pytest.mark.parametrize(
    ("fmt", "fields", "match"),
    [
        (b"l", {"n_buffers": 3}, "buffers"),
        (b"l", {"n_buffers": 1}, "buffers"),
        (b"l", {"n_buffers": -1}, "buffers"),
        (b"u", {"n_buffers": 2}, "buffers"),
        (b"l", {"length": -4}, "negative"),
        (b"l", {"offset": -1}, "negative"),
        (b"l", {"n_children": -1}, "children"),
        (b"l", {"n_children": 1}, "children"),
        (b"l", {"null_count": -2}, "null count"),
        (b"l", {"length": 2**62}, "overflows"),
        (b"l", {"length": 2**62, "offset": 2**62}, "overflow"),
        (b"l", {"length": 2**63 - 1, "offset": 1}, "overflow"),
    ],
)
def test_malformed_arrays_are_refused(
    engine: outguard.Engine, fmt: bytes, fields: dict[str, int], match: str
) -> None:
    buf, addr = _int64s([NOW] * 4)
    fields = {"length": 4, **fields}
    col = Handmade(fmt, [None, addr] + ([addr] if fmt == b"u" else []), **fields)
    _RELEASED.clear()
    with pytest.raises(ValueError, match=match):
        engine.check_batch(col, MAILS, tenant="contoso")
    # The structs were taken and released, once each.
    assert sorted(_RELEASED) == ["array", "schema"]
    del buf


@pytest.mark.parametrize("fmt", [b"u", b"U", b"z", b"l", b"vu"])
def test_empty_arrays_may_have_null_buffers(engine: outguard.Engine, fmt: bytes) -> None:
    col = Handmade(fmt, [None] * (2 if fmt == b"l" else 3), length=0)
    r = engine.check_batch(col, []) if fmt == b"l" else engine.check_batch([], col)
    assert len(r) == 0


# --- numpy lookalikes ---------------------------------------------------------------------------


class Lookalike:
    """Claims to be an array of an unknown kind at a bogus address; iterates as a list."""

    def __init__(self, values: list[int], typestr: str) -> None:
        self.values = values
        self.__array_interface__ = {"shape": (len(values),), "typestr": typestr, "data": (8, True), "version": 3}

    def __iter__(self) -> Any:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@pytest.mark.parametrize("typestr", ["<\u00e94", "<i8", "<U99999999999999999999"])
def test_array_interface_of_other_objects_is_not_trusted(engine: outguard.Engine, typestr: str) -> None:
    now = [NOW + i for i in range(4)]
    r = engine.check_batch(Lookalike(now, typestr), MAILS, tenant="contoso")
    assert list(r.code) == list(engine.check_batch(now, MAILS, tenant="contoso").code)


def test_ndarray_subclass_is_read_through_numpy_interface(engine: outguard.Engine) -> None:
    np = pytest.importorskip("numpy")

    class Sneaky(np.ndarray):  # type: ignore[misc]
        @property
        def __array_interface__(self) -> dict[str, object]:
            return {"shape": (4,), "typestr": "<\u00e98", "data": (8, True), "version": 3}

    now = np.array([NOW + i for i in range(4)], dtype=np.int64).view(Sneaky)
    r = engine.check_batch(now, MAILS, tenant="contoso")
    assert list(r.code) == list(engine.check_batch([NOW + i for i in range(4)], MAILS, tenant="contoso").code)


# --- scalar calls -------------------------------------------------------------------------------


def test_tenant_of_a_str_subclass_is_a_plain_str(engine: outguard.Engine) -> None:
    class Loud(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    t = Loud("contoso")
    for d in (engine.check(NOW, "a@contoso.com", tenant=t), engine.evaluate(NOW, "a@contoso.com", tenant=t)):
        assert type(d.tenant) is str
        assert d.tenant == "contoso" and not (d.tenant == "trial")
    plain = "contoso"
    assert engine.check(NOW, "a@contoso.com", tenant=plain).tenant == "contoso"


def test_keyword_with_surrogates_is_a_type_error(engine: outguard.Engine) -> None:
    for method in (engine.check, engine.evaluate):
        with pytest.raises(TypeError, match="unexpected keyword"):
            method(NOW, "a@contoso.com", **{"tenant\udcff": "contoso"})


def test_errors_dropped_inside_a_call_are_freed_at_once(engine: outguard.Engine) -> None:
    def live() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is TypeError)

    before = live()
    keep = [engine.check(float(NOW), "a@contoso.com", tenant="contoso") for _ in range(2000)]
    assert live() - before < 10
    del keep


def test_every_argument_form_frees_what_it_drops_at_once(engine: outguard.Engine) -> None:
    # Calls whose arguments need more than the plain conversions (a float time, an address
    # object, bool-like flags, a numpy count, bytes-like senders), and calls that are refused:
    # whatever error objects the conversions make and drop are freed during the call.
    import ipaddress

    import numpy as np

    class Raw(bytes):
        pass

    def live() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, BaseException))

    forms: list[dict[str, object]] = [
        {"now": float(NOW)},
        {"client_ip": ipaddress.ip_address("192.0.2.1")},
        {"forwarded": np.bool_(True), "spf_pass": np.bool_(False)},
        {"recipients": np.int64(3)},
        {"mail_from": Raw(b"a@contoso.com")},
    ]
    plain = engine.check(NOW, "a@contoso.com", tenant="contoso", client_ip="192.0.2.1", recipients=3)
    before = live()
    keep = []
    for f in forms:
        args: dict[str, object] = {"now": NOW, "mail_from": "a@contoso.com", "tenant": "contoso"}
        args.update(f)
        for method in (engine.check, engine.evaluate):
            for _ in range(300):
                keep.append(method(**args))
    bads: list[dict[str, object]] = [
        {"recipients": -1},
        {"recipients": 2**40},
        {"recipients": 2**70},
        {"now": -5},
        {"now": 2**70},
        {"forwarded": "yes"},
    ]
    for bad in bads:
        args = {"now": NOW, "mail_from": "a@contoso.com", "tenant": "contoso"}
        args.update(bad)
        for _ in range(300):
            with pytest.raises((TypeError, ValueError, OverflowError)):
                engine.check(**args)
    for _ in range(300):
        with pytest.raises(TypeError):
            engine.check(NOW, "a@contoso.com", **{"tenant\udcff": "contoso"})
    assert live() - before < 10
    assert all(d.accepted == plain.accepted and d.tenant == "contoso" for d in keep)
    del keep


def test_keyword_names_checked_per_method_and_positional_count(engine: outguard.Engine) -> None:
    # One call site (one keyword-name tuple) used with different methods and positional counts:
    # what it may pass is checked on every call, not only the first.
    def with_verdict(method: Any) -> Any:
        return method(NOW, "a@contoso.com", tenant="contoso", verdict="clean")

    def named_now(method: Any, *args: object) -> Any:
        return method(*args, now=NOW, mail_from="a@contoso.com", tenant="contoso")

    for _ in range(3):
        assert with_verdict(engine.evaluate).tenant == "contoso"
        with pytest.raises(TypeError, match="unexpected keyword argument 'verdict'"):
            with_verdict(engine.check)
        assert named_now(engine.check).tenant == "contoso"
        with pytest.raises(TypeError, match="multiple values for argument 'now'"):
            named_now(engine.check, NOW)
        with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
            named_now(engine.check, NOW, "a@contoso.com", "x")


def test_many_call_sites_map_their_keywords(engine: outguard.Engine) -> None:
    # More call sites than the keyword maps kept, each with its names in another order,
    # called in turn: every call reads its own names.
    import itertools

    fields = {"tenant": "'contoso'", "client_ip": "'198.51.100.9'", "recipients": "3", "forwarded": "True"}
    sites = []
    for order in itertools.permutations(fields):
        src = ", ".join(f"{k}={fields[k]}" for k in order)
        sites.append(eval(f"lambda e, now: e.check(now, 'a@contoso.com', {src})"))
    want = engine.check(NOW, "a@contoso.com", tenant="contoso", client_ip="198.51.100.9", recipients=3, forwarded=True)
    assert want.code is not None  # refused for the low-reputation address
    for _ in range(3):
        for f in sites:
            assert f(engine, NOW).to_dict() == want.to_dict()
    unlisted = "".join(["ten", "ant"])  # the same name, another str object: matched by text
    for _ in range(3):
        assert engine.check(NOW, "a@contoso.com", **{unlisted: "contoso"}).tenant == "contoso"


def _decision_state(d: outguard.Decision) -> tuple[object, ...]:
    return (d.to_dict(), repr(d), d.tenant, bool(d), [repr(e) for e in d.events])


def test_decisions_held_are_never_changed(engine: outguard.Engine) -> None:
    # Scalar calls refill a recent Decision nobody holds; one that is held, however it is
    # held, keeps what it was made with.
    calls: list[tuple[Any, dict[str, object]]] = [
        (engine.check, {"mail_from": "a@contoso.com", "tenant": "contoso"}),
        (engine.check, {"mail_from": "b@trial.example", "tenant": "trial"}),
        (engine.check, {"mail_from": "c@lapsed.example", "tenant": "lapsed"}),
        (engine.check, {"mail_from": "a@contoso.com", "auth_user": "a@contoso.com"}),
        (engine.check, {"mail_from": "x@nowhere.example"}),
        (engine.check, {"mail_from": "not an address"}),
        (engine.check, {"mail_from": "a@contoso.com", "tenant": "contoso", "client_ip": "198.51.100.9"}),
        (engine.evaluate, {"mail_from": "a@unknown.example", "tenant": "contoso", "verdict": "spam"}),
    ]
    held: list[tuple[outguard.Decision, tuple[object, ...]]] = []
    holders: dict[str, outguard.Decision] = {}
    for i in range(3000):
        method, kw = calls[i % len(calls)]
        d = method(NOW + i // 100, **kw)
        if i % 7 == 0 or d.events:
            held.append((d, _decision_state(d)))
        elif i % 11 == 0:
            holders[f"k{i % 3}"] = d  # held a while, then let go
        del d
    for d, state in held:
        assert _decision_state(d) == state
    assert any(d.events for d, _ in held)


def test_decisions_take_no_weak_references(engine: outguard.Engine) -> None:
    # Reusing a decision nobody references is invisible only while nothing can refer to it
    # without a reference count: a weak reference would see it refilled.
    import weakref

    with pytest.raises(TypeError):
        weakref.ref(engine.check(NOW, "a@contoso.com", tenant="contoso"))


def test_decisions_found_by_the_gc_are_not_reused(engine: outguard.Engine) -> None:
    engine.check(NOW, "a@contoso.com", tenant="contoso")
    found = [o for o in gc.get_objects() if type(o) is outguard.Decision]
    states = [_decision_state(d) for d in found]
    for _ in range(100):
        engine.check(NOW, "b@trial.example", tenant="trial")
    assert [_decision_state(d) for d in found] == states


def test_decisions_dropped_are_not_kept(engine: outguard.Engine) -> None:
    from outguard import _outguard

    assert _outguard._decisions_reused is getattr(sys, "_is_gil_enabled", lambda: True)()

    def live() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is outguard.Decision)

    name = "".join(["con", "toso"])  # a str of its own, held by the decisions made with it
    refs = sys.getrefcount(name)
    before = live()
    for i in range(3000):
        d = engine.check(NOW, "a@contoso.com", tenant=name)
        assert d.tenant is name
        if i % 3 == 0:
            d = engine.evaluate(NOW, "a@contoso.com", tenant=name)
        engine.check(NOW, "b@trial.example", tenant="trial")
    del d
    # At most the pool's few decisions stay, and with them a few references to the tenant.
    assert live() - before <= 4
    assert sys.getrefcount(name) - refs <= 4
    # Eight held at once: every pooled decision refilled or replaced.
    flush = [engine.check(NOW, "b@trial.example", tenant="trial") for _ in range(8)]
    assert sys.getrefcount(name) == refs
    del flush


def test_decisions_across_threads(engine: outguard.Engine) -> None:
    import threading

    tenants = {"contoso": "a@contoso.com", "trial": "b@trial.example", "lapsed": "c@lapsed.example"}
    expected = {t: _decision_state(engine.check(NOW, m, tenant=t)) for t, m in tenants.items()}
    failures: list[str] = []

    def work(t: str) -> None:
        kept = []
        for i in range(3000):
            d = engine.check(NOW, tenants[t], tenant=t)
            if i % 5 == 0:
                kept.append(d)
        for d in kept[-50:]:
            if _decision_state(d) != expected[t]:
                failures.append(t)
                return

    threads = [threading.Thread(target=work, args=(t,)) for t in tenants for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failures


def test_plain_and_converted_arguments_decide_alike(engine: outguard.Engine) -> None:
    import ipaddress

    import numpy as np

    a = engine.check(NOW, "a@contoso.com", tenant="contoso", client_ip="192.0.2.1", forwarded=True, recipients=2)
    b = engine.check(
        float(NOW),
        b"a@contoso.com",
        tenant="contoso",
        client_ip=ipaddress.ip_address("192.0.2.1"),
        forwarded=np.bool_(True),
        recipients=np.int64(2),
    )
    assert a.to_dict() == b.to_dict()
