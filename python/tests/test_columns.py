"""Batch columns in every input form decide as the scalar calls do; bad columns raise."""

from __future__ import annotations

import array
from typing import Any

import pytest

import outguard
from conftest import NOW

# A mix of every outcome: registered, unregistered (5.7.750 after 3), unattributed, invalid,
# null sender, IDNA senders and logins, low-reputation IPs, connectors, forwarding.
SENDERS = [
    "a@contoso.com",
    "x@evil.example",
    "y@evil.example",
    "bad address",
    "",
    "jörg@bücher.example",
    "b@sub.contoso.com",
    "z@trial.example",
    "x@evil.example",
    "q@other.example",
    "w@contoso.net",
    "<>",
]
TENANTS: list[str | None] = ["contoso", "contoso", "contoso", "contoso", "contoso", "contoso", None, None, "contoso", None, "contoso", "lapsed"]
IPS: list[str | None] = ["203.0.113.5", None, "198.51.100.9", None, "", "2001:db8::1", "198.51.100.7", None, None, "203.0.113.77", None, None]
AUTH: list[str | None] = [None, None, None, None, None, None, None, "z@trial.example", None, None, "w@bücher.example", None]
FWD = [False, False, False, False, False, False, False, False, True, True, False, False]
SPF = [False, False, False, False, False, False, False, False, True, True, False, False]
RCPT = [1, 2, 1, 1, 3, 1, 1, 1, 1, 1, 1, 7]
N = len(SENDERS)
TIMES = [NOW + 7 * i for i in range(N)]


def scalar(engine: outguard.Engine, i: int) -> outguard.Decision:
    return engine.check(
        TIMES[i],
        SENDERS[i],
        tenant=TENANTS[i],
        client_ip=IPS[i],
        auth_user=AUTH[i],
        forwarded=FWD[i],
        spf_pass=SPF[i],
        recipients=RCPT[i],
    )


def expected(engine: outguard.Engine) -> dict[str, list[Any]]:
    ds = [scalar(engine, i) for i in range(N)]
    return {c: [d.to_dict()[c] if c not in ("total", "suspicious", "unregistered", "limit") else getattr(d.counters, c) for d in ds] for c in outguard.Replay.columns}


@pytest.fixture
def primed(policy: outguard.Policy) -> outguard.Engine:
    """An engine with counts, so that decisions depend on the time and the tenant."""
    e = outguard.Engine(policy)
    for i in range(5):
        e.evaluate(NOW + i, f"u{i}@evil.example", tenant="contoso")
    return e


def check_all_forms(engine: outguard.Engine, cols: dict[str, Any]) -> None:
    want = expected(engine)
    r = engine.check_batch(cols["now"], cols["mail_from"], tenant=cols["tenant"], client_ip=cols["client_ip"],
                           auth_user=cols["auth_user"], forwarded=cols["forwarded"], spf_pass=cols["spf_pass"],
                           recipients=cols["recipients"])
    got = r.to_dict()
    for c in outguard.Replay.columns:
        assert got[c] == want[c], c


def test_lists_match_scalar(primed: outguard.Engine) -> None:
    check_all_forms(primed, {"now": TIMES, "mail_from": SENDERS, "tenant": TENANTS, "client_ip": IPS, "auth_user": AUTH,
                             "forwarded": FWD, "spf_pass": SPF, "recipients": RCPT})


def test_numpy_matches_scalar(primed: outguard.Engine) -> None:
    np = pytest.importorskip("numpy")
    text = lambda v: np.array(["" if x is None else x for x in v])  # noqa: E731
    for tdtype in (np.int64, np.uint64, np.float64):
        check_all_forms(primed, {
            "now": np.array(TIMES, dtype=tdtype), "mail_from": text(SENDERS), "tenant": text(TENANTS),
            "client_ip": text(IPS), "auth_user": text(AUTH), "forwarded": np.array(FWD),
            "spf_pass": np.array(SPF, dtype=np.int8), "recipients": np.array(RCPT, dtype=np.uint16),
        })
    # Bytes (S) columns, and a strided view.
    ascii_senders = [s if s.isascii() else "k@contoso.com" for s in SENDERS]
    e2 = primed
    r = e2.check_batch(np.array(TIMES)[::1], np.array(ascii_senders, dtype="S"), tenant=np.array(["" if t is None else t for t in TENANTS], dtype="S"))
    assert r.code == [e2.check(TIMES[i], ascii_senders[i], tenant=TENANTS[i]).code for i in range(N)]
    wide = np.repeat(np.array(TIMES), 2)[::2]  # not contiguous
    assert not wide.flags["C_CONTIGUOUS"]
    assert e2.check_batch(wide, SENDERS, tenant=TENANTS).code == [e2.check(TIMES[i], SENDERS[i], tenant=TENANTS[i]).code for i in range(N)]


def test_arrow_matches_scalar(primed: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    for string in (pa.string(), pa.large_string(), pa.string_view()):
        check_all_forms(primed, {
            "now": pa.array(TIMES, pa.int64()), "mail_from": pa.array(SENDERS, string), "tenant": pa.array(TENANTS, string),
            "client_ip": pa.array(IPS, string), "auth_user": pa.array(AUTH, string), "forwarded": pa.array(FWD),
            "spf_pass": pa.array(SPF), "recipients": pa.array(RCPT, pa.uint32()),
        })
    # Chunked columns, and slices (an offset into the buffers).
    half = N // 2
    chunked = {
        "now": pa.chunked_array([TIMES[:half], TIMES[half:]], pa.uint64()),
        "mail_from": pa.chunked_array([SENDERS[:half], SENDERS[half:]]),
        "tenant": pa.array([None, None] + TENANTS, pa.string()).slice(2),
        "client_ip": pa.chunked_array([IPS[:3], IPS[3:]]),
        "auth_user": pa.array(AUTH),
        "forwarded": pa.array([True] + FWD).slice(1),
        "spf_pass": pa.array(SPF),
        "recipients": pa.array(RCPT),
    }
    check_all_forms(primed, chunked)


def test_pandas_matches_scalar(primed: outguard.Engine) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"now": TIMES, "mail_from": SENDERS, "tenant": TENANTS, "client_ip": IPS, "auth_user": AUTH,
                       "forwarded": FWD, "spf_pass": SPF, "recipients": RCPT})
    check_all_forms(primed, {c: df[c] for c in df.columns})
    obj = df.astype(object)
    check_all_forms(primed, {c: obj[c] for c in obj.columns})


def test_replay_forms_agree(policy: outguard.Policy) -> None:
    np = pytest.importorskip("numpy")
    n = 300
    times = [NOW + i // 3 for i in range(n)]
    senders = [f"u{i}@evil{i % 4}.example" if i % 3 else "a@contoso.com" for i in range(n)]
    verdicts = ["spam" if i % 7 == 0 else "clean" for i in range(n)]
    ref = outguard.Engine(policy)
    serial = [ref.evaluate(times[i], senders[i], tenant="contoso", verdict=verdicts[i]) for i in range(n)]
    forms: list[tuple[Any, Any, Any]] = [(times, senders, verdicts), (np.array(times), np.array(senders), np.array(verdicts))]
    try:
        import pyarrow as pa

        forms.append((pa.array(times), pa.array(senders), pa.array(verdicts)))
    except ImportError:
        pass
    for t, s, v in forms:
        e = outguard.Engine(policy)
        r = e.replay(t, s, tenant="contoso", verdict=v)
        assert r.code == [d.code for d in serial]
        assert [ev.kind for ev in r.events] == [ev.kind for d in serial for ev in d.events]
        assert e.snapshot() == ref.snapshot()


def test_columnar_results(primed: outguard.Engine) -> None:
    r = primed.check_batch(TIMES, SENDERS, tenant=TENANTS, client_ip=IPS, auth_user=AUTH)
    for c in outguard.Replay.columns:
        a = r.array(c)
        assert isinstance(a, array.array) and len(a) == N
        if c in ("accepted",):
            assert [bool(x) for x in a] == r[c]
        elif c in ("total", "suspicious", "unregistered", "limit"):
            assert list(a) == r[c]
        elif c == "block_ends":
            assert [None if x == 0 else "release" if x == 2**64 - 1 else x for x in a] == r[c]
        else:
            cats = r.categories(c)
            assert [cats[k] for k in a] == r[c], c
    assert r.categories("code")[0] is None and "5.7.750" in r.categories("code")
    with pytest.raises(KeyError):
        r.array("nope")
    np = pytest.importorskip("numpy")
    d = r.to_numpy()
    assert d["accepted"].dtype == np.bool_ and d["accepted"].tolist() == r.accepted
    assert d["code"].tolist() == r.code and d["tenant"].tolist() == r.tenant
    assert d["total"].dtype == np.uint32 and d["total"].tolist() == r.total


def test_bad_columns_raise(primed: outguard.Engine) -> None:
    e = primed
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="tenant has 2 values but now has 3"):
        e.check_batch(np.array([NOW] * 3), np.array(["a@contoso.com"] * 3), tenant=np.array(["contoso"] * 2))
    with pytest.raises(TypeError, match="mail_from: expected strings"):
        e.check_batch(np.array([NOW]), np.array([1.5]))
    with pytest.raises(TypeError, match="now: expected numbers"):
        e.check_batch(np.array(["x"]), ["a@contoso.com"])
    with pytest.raises(ValueError, match=r"now\[1\]: -5 is negative"):
        e.check_batch(np.array([NOW, -5]), ["a@contoso.com"] * 2)
    with pytest.raises(ValueError, match=r"tenant\[1\]: not valid UTF-8"):
        e.check_batch([NOW, NOW], ["a@contoso.com"] * 2, tenant=np.array([b"contoso", b"\xff\xfe"], dtype="S"))
    with pytest.raises(ValueError, match=r"forwarded\[0\]: expected a bool, got 2"):
        e.check_batch([NOW], ["a@contoso.com"], forwarded=np.array([2]))
    with pytest.raises(ValueError, match=r"recipients\[0\]"):
        e.check_batch([NOW], ["a@contoso.com"], recipients=np.array([-1]))
    with pytest.raises(ValueError, match=r"client_ip\[0\]: invalid IP address"):
        e.check_batch(np.array([NOW]), np.array(["a@contoso.com"]), client_ip=np.array(["nope"]))
    with pytest.raises(ValueError, match=r"verdict\[0\]: unknown verdict"):
        e.replay([NOW], ["a@contoso.com"], verdict=np.array(["tasty"]))
    with pytest.raises(TypeError, match=r"now\[0\]: expected Unix seconds"):
        e.check_batch(np.array([[NOW]]), ["a@contoso.com"])  # 2-D: read as objects, each a row
    pa = pytest.importorskip("pyarrow")
    bad = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(np.array([0, 7, 9], dtype=np.int32).tobytes()), pa.py_buffer(b"contoso\xff\xfe")])
    with pytest.raises(ValueError, match=r"tenant\[1\]: not valid UTF-8"):
        e.check_batch([NOW, NOW], ["a@contoso.com"] * 2, tenant=bad)
    with pytest.raises(ValueError, match=r"mail_from\[1\]: not valid UTF-8"):
        e.check_batch([NOW, NOW], bad)
    with pytest.raises(ValueError, match="has 2 values but now has 3"):
        e.check_batch(pa.array([NOW] * 3), pa.array(["a@contoso.com"] * 2))
    with pytest.raises(TypeError, match="tenant: expected an Arrow string"):
        e.check_batch([NOW], ["a@contoso.com"], tenant=pa.array([1]))
    with pytest.raises(ValueError, match=r"now\[0\]: missing time"):
        e.check_batch(pa.array([None], pa.int64()), ["a@contoso.com"])
    # Types the reader does not know go through Python objects, as before.
    dict_col = pa.array(["contoso", "contoso"]).dictionary_encode()
    assert e.check_batch([NOW, NOW], ["a@contoso.com"] * 2, tenant=dict_col).tenant == ["contoso", "contoso"]


def test_batch_decisions_rebuild_exactly(primed: outguard.Engine) -> None:
    """Replay keeps compact decisions: every one rebuilds the full decision `check` gives,
    across group boundaries (256) and with blocked tenants, counters and limits."""
    order = [(7 * k + k // 13) % N for k in range(700)]
    cols = {"now": [TIMES[i] + k for k, i in enumerate(order)]}
    r = primed.check_batch(
        cols["now"], [SENDERS[i] for i in order], tenant=[TENANTS[i] for i in order],
        client_ip=[IPS[i] for i in order], auth_user=[AUTH[i] for i in order],
        forwarded=[FWD[i] for i in order], spf_pass=[SPF[i] for i in order], recipients=[RCPT[i] for i in order],
    )
    assert len(r) == len(order)
    seen_block = False
    for k, i in enumerate(order):
        want = primed.check(cols["now"][k], SENDERS[i], tenant=TENANTS[i], client_ip=IPS[i], auth_user=AUTH[i],
                            forwarded=FWD[i], spf_pass=SPF[i], recipients=RCPT[i])
        got = r.decision(k)
        assert got.to_dict() == want.to_dict(), k
        assert repr(got) == repr(want), k
        assert got.counters == want.counters, k
        seen_block |= want.block_ends is not None
    assert seen_block
    assert r.to_dict()["limit"] == [r.decision(k).counters.limit for k in range(len(order))]


def test_fused_batches_match_scalar(primed: outguard.Engine) -> None:
    """Batches of several groups (the core decides 16 messages at a time; fields the same
    for every message are set once) in every column form, each optional column varying,
    constant (one value) or absent, decide as `check` does, message by message."""
    import random

    np = pytest.importorskip("numpy")
    pa = pytest.importorskip("pyarrow")
    n = 75  # four full groups of 16 and a short one
    rows = [(3 * k + k // 16) % N for k in range(n)]
    times = [TIMES[i] + k for k, i in enumerate(rows)]
    data: dict[str, list[Any]] = {
        "mail_from": [SENDERS[i] for i in rows], "tenant": [TENANTS[i] for i in rows],
        "client_ip": [IPS[i] for i in rows], "auth_user": [AUTH[i] for i in rows],
        "cert_domain": [None if k % 5 else "contoso.com" for k in range(n)],
        "forwarded": [FWD[i] for i in rows], "spf_pass": [SPF[i] for i in rows],
        "dkim_pass": [k % 3 == 0 for k in range(n)], "recipients": [RCPT[i] for i in rows],
    }
    one = {"mail_from": "a@contoso.com", "tenant": "contoso", "client_ip": "198.51.100.9", "auth_user": "w@bücher.example",
           "cert_domain": "contoso.com", "forwarded": True, "spf_pass": True, "dkim_pass": True, "recipients": 3}
    flags = ("forwarded", "spf_pass", "dkim_pass")

    def arrow(c: str, v: list[Any]) -> Any:
        t = pa.bool_() if c in flags else pa.uint32() if c == "recipients" else pa.string()
        return pa.array(v, t)

    def form(c: str, v: list[Any], how: str) -> Any:
        if how == "list":
            return v
        if how == "numpy":
            if c in flags or c == "recipients":
                return np.array(v)
            return np.array(["" if x is None else x for x in v])
        if how == "arrow":
            return arrow(c, v)
        if how == "sliced":  # an offset into the buffers, and nulls
            return arrow(c, [v[-1], None, *v]).slice(2)
        # chunks whose boundaries are not those of the groups
        cuts = [0, 5, 5, 29, 40, n]
        return pa.chunked_array([arrow(c, v[a:b]) for a, b in zip(cuts, cuts[1:])])

    rng = random.Random(7)
    hows = ["list", "numpy", "arrow", "sliced", "chunked", "one", "absent"]
    for trial in range(30):
        cols: dict[str, Any] = {}
        values: dict[str, list[Any]] = {}
        for c, v in data.items():
            how = rng.choice(hows[:5] if c == "mail_from" else hows)
            if how == "one":
                cols[c], values[c] = one[c], [one[c]] * n
            elif how == "absent":
                cols[c], values[c] = None, [None] * n
            else:
                cols[c], values[c] = form(c, v, how), v
            if how == "numpy" and c not in flags and c != "recipients":
                values[c] = [None if x is None else x for x in v]
        now: Any = rng.choice([times, np.array(times), pa.array(times, pa.int64()),
                               np.array(times, dtype=">i8"), pa.chunked_array([times[:17], times[17:]])])
        mail_from = cols.pop("mail_from")
        r = primed.check_batch(now, mail_from, **cols)
        assert len(r) == n
        for k in range(n):
            kw = {c: values[c][k] for c in data if c != "mail_from"}
            kw = {c: (False if c in flags else 1 if c == "recipients" else None) if x is None else x for c, x in kw.items()}
            want = primed.check(times[k], values["mail_from"][k], **kw)
            assert r.decision(k).to_dict() == want.to_dict(), (trial, k, {c: type(x).__name__ for c, x in cols.items()})


def test_numpy_text_forms(primed: outguard.Engine) -> None:
    """numpy `U` columns in either byte order, ASCII or not, padded or not, read as the same text."""
    np = pytest.importorskip("numpy")
    senders = ["a@contoso.com", "jörg@bücher.example", "x@evil.example", "", "b@sub.contoso.com"] * 7
    tenants = ["contoso", "", "contoso", "lapsed", "c\u00f6ntoso"] * 7
    times = [NOW + k for k in range(len(senders))]
    want = [primed.check(t, s, tenant=x or None).to_dict() for t, s, x in zip(times, senders, tenants)]
    for order in ("<", ">", "="):
        for width in ("", "40"):
            s = np.array(senders, dtype=f"{order}U{width or max(map(len, senders))}")
            t = np.array(tenants, dtype=f"{order}U{width or max(map(len, tenants))}")
            r = primed.check_batch(np.array(times), s, tenant=t)
            assert [r.decision(k).to_dict() for k in range(len(times))] == want, (order, width)


def test_batch_errors_name_the_value_in_a_later_group(primed: outguard.Engine) -> None:
    """A bad value far into a batch (past the first groups) refuses the whole batch, naming it."""
    np = pytest.importorskip("numpy")
    pa = pytest.importorskip("pyarrow")
    n = 70
    times = [NOW + k for k in range(n)]
    senders = ["a@contoso.com"] * n
    tenants = [b"contoso"] * n
    tenants[53] = b"\xff"
    with pytest.raises(ValueError, match=r"^tenant\[53\]: not valid UTF-8$"):
        primed.check_batch(np.array(times), np.array(senders), tenant=np.array(tenants, dtype="S"))
    ips = ["203.0.113.5"] * n
    ips[41] = "300.1.1.1"
    for col in (ips, np.array(ips), pa.array(ips), pa.chunked_array([ips[:20], ips[20:]])):
        with pytest.raises(ValueError, match=r'^client_ip\[41\]: invalid IP address "300.1.1.1"$'):
            primed.check_batch(times, senders, tenant="contoso", client_ip=col)
    with pytest.raises(ValueError, match=r'^client_ip\[0\]: invalid IP address "nope"$'):
        primed.check_batch(times, senders, client_ip="nope")
    assert len(primed.check_batch([], [], client_ip="nope")) == 0
    # Addresses with white space around them (ASCII or not) read as the addresses.
    padded = [" 203.0.113.5\t", "\u00a0198.51.100.9\u2003", "2001:db8::1", ""]
    plain = ["203.0.113.5", "198.51.100.9", "2001:db8::1", None]
    for col in (padded, np.array(padded), pa.array(padded)):
        got = primed.check_batch([NOW] * 4, ["a@contoso.com"] * 4, tenant="contoso", client_ip=col)
        want = primed.check_batch([NOW] * 4, ["a@contoso.com"] * 4, tenant="contoso", client_ip=plain)
        assert got.to_dict() == want.to_dict()
        assert got.code[1] is not None  # the low-reputation range


CALL_CHECKS = """
import outguard
from conftest import NOW, SCENARIO
e = outguard.Engine(outguard.Policy.from_toml(SCENARIO, "s.toml"))
d = e.check(NOW, "a@contoso.com", tenant="contoso", client_ip="203.0.113.5", recipients=2)
assert (d.accepted, d.tenant, d.attribution) == (True, "contoso", "explicit"), d
kw = {"ten" + "ant": "con" + "toso", "auth_" + "user": None}  # names made at run time
assert e.check(NOW, mail_from="x@evil.example", **kw).tenant == "contoso"
assert e.check(now=NOW, mail_from="jörg@bücher.example", auth_user="a@contoso.com").tenant == "contoso"
for args, kwargs, msg in [
    ((NOW, "a@contoso.com", "contoso"), {}, "takes 2 positional arguments but 3 were given"),
    ((NOW,), {}, "missing required argument 'mail_from'"),
    ((NOW, "a@contoso.com"), {"tenat": "x"}, "unexpected keyword argument 'tenat'"),
    ((NOW, "a@contoso.com"), {"now": NOW}, "multiple values for argument 'now'"),
    ((NOW, "a@contoso.com"), {"tenant": 5}, "tenant: expected str or None, got int"),
    ((NOW, "a@contoso.com"), {"forwarded": "yes"}, "forwarded: expected a bool"),
    ((NOW, 5), {}, "mail_from: expected str or bytes"),
]:
    try:
        e.check(*args, **kwargs)
    except TypeError as err:
        assert msg in str(err), (msg, str(err))
    else:
        raise AssertionError(msg)
try:
    e.check(NOW, "a@contoso.com", recipients=-1)
except ValueError as err:
    assert "recipients" in str(err)
else:
    raise AssertionError("recipients")
r = e.check_batch([NOW, NOW + 1], ["a@contoso.com", "x@evil.example"], tenant=["contoso", None])
for k, (t, mf, ten) in enumerate([(NOW, "a@contoso.com", "contoso"), (NOW + 1, "x@evil.example", None)]):
    assert r.decision(k).to_dict() == e.check(t, mf, tenant=ten).to_dict(), k
print("ok")
"""


@pytest.mark.parametrize("convention", ["default", "varargs"])
def test_check_call_conventions(convention: str) -> None:
    """Engine.check's own argument handling, in both calling conventions."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, OUTGUARD_CHECK_CALL=convention, PYTHONPATH=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", CALL_CHECKS], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_arrow_text_read_paths_match_scalar(primed: outguard.Engine) -> None:
    """A tenant column is read through one of three paths, chosen per Arrow chunk: all ASCII
    (sliced by bounds only), UTF-8 with other characters (sliced at character boundaries),
    or not UTF-8 as a whole (checked a group at a time). Each decides as `check` does, in
    every string layout, sliced or chunked; a bad value is named by its index."""
    pa = pytest.importorskip("pyarrow")
    n = 70
    times = [NOW + k for k in range(n)]
    senders = [SENDERS[k % N] for k in range(n)]
    ascii_t = [["contoso", "lapsed", "other", ""][k % 4] for k in range(n)]
    utf8_t = [("cöntoso" if k % 9 == 4 else t) for k, t in enumerate(ascii_t)]
    want = {
        name: [primed.check(t, s, tenant=x or None).to_dict() for t, s, x in zip(times, senders, col)]
        for name, col in (("ascii", ascii_t), ("utf8", utf8_t))
    }
    for name, col in (("ascii", ascii_t), ("utf8", utf8_t)):
        for typ in (pa.string(), pa.large_string()):
            forms = [
                pa.array(col, typ),
                pa.array(["x", "yy", *col], typ).slice(2),
                pa.chunked_array([pa.array(col[:23], typ), pa.array(col[23:], typ)]),
            ]
            for f in forms:
                for s in (pa.array(senders, typ), senders):
                    r = primed.check_batch(pa.array(times, pa.int64()), s, tenant=f)
                    got = [r.decision(k).to_dict() for k in range(n)]
                    assert got == want[name], (name, typ, type(f).__name__)
    # Not UTF-8 as a whole, but only in a later group: the earlier groups read, the bad value named.
    raw = [t.encode() for t in ascii_t]
    raw[61] = b"con\xfftoso"
    for typ in (pa.binary(), pa.large_binary()):
        with pytest.raises(ValueError, match=r"^tenant\[61\]: not valid UTF-8$"):
            primed.check_batch(pa.array(times, pa.int64()), senders, tenant=pa.array(raw, typ))
    # A value cut inside a character: the column is UTF-8 as a whole, the value is not.
    cut = pa.Array.from_buffers(
        pa.string(), 2, [None, pa.py_buffer(array.array("i", [0, 2, 8]).tobytes()), pa.py_buffer("cöntoso".encode())]
    )
    with pytest.raises(ValueError, match=r"^tenant\[0\]: not valid UTF-8$"):
        primed.check_batch([NOW, NOW], ["a@contoso.com"] * 2, tenant=cut)
    # Times: a negative one far into an Arrow column is named (the column is not copied whole).
    t = list(times)
    t[40] = -5
    with pytest.raises(ValueError, match=r"^now\[40\]: -5 is negative"):
        primed.check_batch(pa.array(t, pa.int64()), senders)
    r = primed.check_batch(pa.array(times, pa.uint64()), senders, tenant="contoso")
    assert [r.decision(k).to_dict() for k in range(n)] == [
        primed.check(x, s, tenant="contoso").to_dict() for x, s in zip(times, senders)
    ]


def test_arrow_now_read_in_place_as_copied(primed: outguard.Engine) -> None:
    """An Arrow `now` column of 64-bit integers is read in place (one chunk, no nulls, none
    negative) or copied (the others); sliced, empty, chunked or with nulls, it decides as
    `check` does or names its bad value."""
    pa = pytest.importorskip("pyarrow")
    n = 40
    times = [NOW + 3 * k for k in range(n)]
    senders = [SENDERS[k % N] for k in range(n)]
    want = [primed.check(t, s, tenant="contoso").to_dict() for t, s in zip(times, senders)]
    forms = [
        pa.array(times, pa.int64()),
        pa.array(times, pa.uint64()),
        pa.array([NOW + 10**8, NOW + 10**8, *times], pa.int64()).slice(2),
        pa.array([-1, 7, *times], pa.int64()).slice(2),
        pa.chunked_array([times[:9], times[9:]], pa.int64()),
    ]
    for f in forms:
        r = primed.check_batch(f, senders, tenant="contoso")
        assert [r.decision(k).to_dict() for k in range(n)] == want, f.type
    assert len(primed.check_batch(pa.array([], pa.int64()), pa.array([], pa.string()))) == 0
    assert len(primed.check_batch(pa.array([5], pa.int64()).slice(1), [])) == 0
    with pytest.raises(ValueError, match=r"^now\[2\]: missing time"):
        primed.check_batch(pa.array([NOW, NOW, None], pa.int64()), senders[:3])
    with pytest.raises(ValueError, match=r"^now\[1\]: -1 is negative"):
        primed.check_batch(pa.array([-1, 7, NOW, -1], pa.int64()).slice(2), senders[:2])


def test_batches_keep_each_tenants_own_limits() -> None:
    """A batch keeps a tenant's limits once (from its first decision): tenants on their own
    rules and on the defaults, mixed in one batch, each decide as `check` does (limits
    included), and `replay` counts as `evaluate` does."""
    pa = pytest.importorskip("pyarrow")
    from conftest import SCENARIO

    text = SCENARIO + (
        '\n[[tenants]]\nid = "own"\ndomains = ["own.example"]\n'
        "rules.unregistered_domain.limit = 7\nrules.tenant_threshold.min_messages = 4\n"
    )
    pol = outguard.Policy.from_toml(text, "own.toml")
    n = 90
    who = [["contoso", "own", "trial", None][k % 4] for k in range(n)]
    senders = [
        {"contoso": "x@evil.example", "own": "y@evil.example", "trial": "z@trial.example", None: "q@other.example"}[w]
        if k % 3 else {"contoso": "a@contoso.com", "own": "b@own.example", "trial": "c@trial.example", None: "d@x.example"}[w]
        for k, w in enumerate(who)
    ]
    times = [NOW + 11 * k for k in range(n)]
    scalar = outguard.Engine(pol)
    want = [scalar.evaluate(t, s, tenant=w).to_dict() for t, s, w in zip(times, senders, who)]
    assert {d["counters"]["limit"] for d in want if d["tenant"] == "own"} == {7}
    assert {d["counters"]["limit"] for d in want if d["tenant"] == "contoso"} == {3}
    r = outguard.Engine(pol).replay(pa.array(times, pa.int64()), pa.array(senders), tenant=pa.array(who))
    assert [r.decision(k).to_dict() for k in range(n)] == want
    checked = outguard.Engine(pol)
    for t, s, w in zip(times[:30], senders[:30], who[:30]):
        checked.evaluate(t, s, tenant=w)
    later = [t + 5 for t in times]
    want = [checked.check(t, s, tenant=w).to_dict() for t, s, w in zip(later, senders, who)]
    r = checked.check_batch(pa.array(later, pa.int64()), pa.array(senders), tenant=pa.array(who))
    assert [r.decision(k).to_dict() for k in range(n)] == want


def test_sliced_arrow_senders_and_addresses(primed: outguard.Engine) -> None:
    """Sender and client-IP columns that start inside their Arrow buffers (sliced), read in
    one loop per group, decide as `check` does; a bad address is named by its index."""
    pa = pytest.importorskip("pyarrow")
    n = 50
    times = [NOW + k for k in range(n)]
    senders = [SENDERS[k % N] for k in range(n)]
    ips = [IPS[k % N] or "" for k in range(n)]
    ips[7] = " 203.0.113.9\u00a0"
    want = [
        primed.check(t, s, tenant="contoso", client_ip=ip or None).to_dict()
        for t, s, ip in zip(times, senders, ips)
    ]
    s_col = pa.array(["zz@evil.example", "bad", *senders]).slice(2)
    ip_col = pa.array(["198.51.100.9", "nope", *ips]).slice(2)
    r = primed.check_batch(pa.array(times, pa.int64()), s_col, tenant="contoso", client_ip=ip_col)
    assert [r.decision(k).to_dict() for k in range(n)] == want
    bad = list(ips)
    bad[33] = "300.1.2.3"
    with pytest.raises(ValueError, match=r'^client_ip\[33\]: invalid IP address "300.1.2.3"$'):
        primed.check_batch(times, senders, tenant="contoso", client_ip=pa.array(["1.2.3.4", *bad]).slice(1))


def test_list_readers_fall_back_exactly(primed: outguard.Engine) -> None:
    """Lists of exact str / int are read in one loop; every other element (str and int
    subclasses, bools, ints beyond 64 bits, lone surrogates, NULs, non-ASCII) is read as the
    scalar call reads it, and a bad one is named by its index."""

    class S(str):
        pass

    class I(int):
        pass

    e = primed
    senders = ["a@contoso.com", S("x@evil.example"), "jörg@bücher.example", "a\0b@contoso.com", "<>"]
    times = [NOW, I(NOW + 1), NOW + 2, NOW + 3, NOW + 4]
    tenants = ["contoso", "contoso", S("contoso"), "contoso", "contoso"]
    got = e.check_batch(times, senders, tenant=tenants).to_dict()
    counts = ("total", "suspicious", "unregistered", "limit")

    def columns(ds: list[outguard.Decision]) -> dict[str, list[Any]]:
        return {c: [getattr(d.counters, c) if c in counts else d.to_dict()[c] for d in ds] for c in outguard.Replay.columns}

    assert got == columns([e.check(int(t), str(s), tenant=str(n)) for t, s, n in zip(times, senders, tenants)])
    # Exact ints only in the fast loop; each of these is the same decision as its scalar call.
    plain = [NOW, NOW + 1, NOW + 2, NOW + 3, NOW + 4]
    assert e.check_batch(plain, senders, tenant=tenants).to_dict() == e.check_batch(times, senders, tenant=tenants).to_dict()
    big = 2**62
    assert e.check_batch([big, big], ["a@contoso.com"] * 2, tenant="contoso").accepted == [True, True]
    # A bool is read as the scalar call reads it.
    lapsed = ["x@lapsed.example"] * 2  # refused until a time: the decision depends on `now`
    assert e.check_batch([NOW, True], lapsed, tenant="lapsed").to_dict() == columns(
        [e.check(t, lapsed[0], tenant="lapsed") for t in (NOW, True)]
    )
    with pytest.raises((TypeError, ValueError, OverflowError), match=r"now\[2\]"):
        e.check_batch([NOW, NOW, 2**64], ["a@contoso.com"] * 3)
    with pytest.raises(ValueError, match=r"now\[1\]: -5 is negative"):
        e.check_batch([NOW, -5], ["a@contoso.com"] * 2)
    with pytest.raises(ValueError, match=r"mail_from\[2\]"):
        e.check_batch([NOW] * 3, ["a@contoso.com", "b@contoso.com", "\ud800@contoso.com"])
    with pytest.raises(ValueError, match=r"tenant\[1\]"):
        e.check_batch([NOW] * 2, ["a@contoso.com"] * 2, tenant=["contoso", "\udcff"])
    with pytest.raises(TypeError, match=r"mail_from\[1\]"):
        e.check_batch([NOW] * 2, ["a@contoso.com", 5])
    # Lists of exact str only, the odd value last: the one-loop reader meets it itself.
    exact = ["a@contoso.com", "b@contoso.com", "a\0b@contoso.com"]
    assert e.check_batch([NOW] * 3, exact, tenant="contoso").code == [
        e.check(NOW, s, tenant="contoso").code for s in exact
    ] == [None, None, "5.1.7"]
    with pytest.raises(ValueError, match=r"mail_from\[2\]"):
        e.check_batch([NOW] * 3, ["a@contoso.com", "b@contoso.com", "c\udcff@contoso.com"])


def test_one_table_in_place_of_the_columns(policy: outguard.Policy) -> None:
    """A DataFrame, a pyarrow Table or RecordBatch, or a dict of columns is read by column
    name (`now` or `time`), other columns ignored; the result is that of the same columns."""
    cols: dict[str, Any] = {"time": TIMES, "mail_from": SENDERS, "tenant": TENANTS, "client_ip": IPS,
                            "auth_user": AUTH, "forwarded": FWD, "spf_pass": SPF, "recipients": RCPT,
                            "verdict": ["spam" if i % 3 == 0 else "clean" for i in range(N)], "note": list(range(N))}
    want_check = outguard.Engine(policy).check_batch(
        TIMES, SENDERS, tenant=TENANTS, client_ip=IPS, auth_user=AUTH, forwarded=FWD, spf_pass=SPF, recipients=RCPT
    ).to_dict()
    want_replay = outguard.Engine(policy).replay(
        TIMES, SENDERS, verdict=cols["verdict"], tenant=TENANTS, client_ip=IPS, auth_user=AUTH, forwarded=FWD,
        spf_pass=SPF, recipients=RCPT,
    ).to_dict()
    assert want_replay != want_check  # the verdicts count
    tables: list[Any] = [cols, {("now" if k == "time" else k): v for k, v in cols.items()}]
    pa = pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    tables += [pa.table(cols), pa.RecordBatch.from_pydict(cols), pd.DataFrame(cols)]
    for t in tables:
        assert outguard.Engine(policy).check_batch(t).to_dict() == want_check, type(t)
        assert outguard.Engine(policy).replay(t).to_dict() == want_replay, type(t)
    # Columns given as arguments add to the table's; the same field given twice is refused.
    e = outguard.Engine(policy)
    only = {"now": TIMES, "mail_from": SENDERS}
    assert e.check_batch(only, tenant=TENANTS, client_ip=IPS, auth_user=AUTH, forwarded=FWD, spf_pass=SPF,
                         recipients=RCPT).to_dict() == want_check
    with pytest.raises(TypeError, match="tenant: given both"):
        e.check_batch(pd.DataFrame(cols), tenant="contoso")
    with pytest.raises(TypeError, match="no mail_from column"):
        e.check_batch(pd.DataFrame({"now": TIMES}))
    with pytest.raises(TypeError, match=r"no now \(or time\) column"):
        e.check_batch({"mail_from": SENDERS})
    with pytest.raises(TypeError, match="mail_from: missing"):
        e.check_batch(TIMES)
    for t in (cols, pd.DataFrame(cols), pa.table(cols)):
        with pytest.raises(TypeError, match="now: a table; give it alone"):
            e.check_batch(t, SENDERS)
