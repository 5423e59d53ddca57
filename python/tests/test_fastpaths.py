"""The fast paths of the scalar calls and of batch text columns give what the general paths
give: tenant objects reused, text lent or copied, buffers checked whole or value by value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import outguard
from conftest import NOW

# Runs in a subprocess per calling convention; prints the results as JSON.
SCALAR_CASES = r"""
import json, sys
import outguard
from outguard import _outguard
from conftest import NOW, SCENARIO
e = outguard.Engine(outguard.Policy.from_toml(SCENARIO, "s.toml"))
out = {"lent": _outguard._text_lent}
cases = [
    ((NOW, "a@contoso.com"), {"tenant": "contoso"}),
    ((NOW, b"a@contoso.com"), {"tenant": "contoso"}),
    ((NOW, "jörg@bücher.example"), {"auth_user": "a@contoso.com"}),
    ((NOW, "x@evil.example"), {"auth_user": "w@bücher.example"}),
    ((NOW, "a@contoso.com"), {"cert_domain": "mail.contoso.com"}),
    ((NOW, "a@contoso.com"), {"tenant": "", "client_ip": "203.0.113.9"}),
    ((NOW, "a@contoso.com"), {"tenant": "cöntoso"}),
    ((NOW, "a@contoso.com"), {"tenant": "nobody"}),
    ((NOW, "a@contoso.com"), {"tenant": "contoso", "client_ip": "198.51.100.9"}),
    ((float(NOW), "a@contoso.com"), {"tenant": "contoso"}),
    ((2**62, "a@contoso.com"), {"tenant": "contoso"}),
    ((2**64 - 1, "a@contoso.com"), {"tenant": "contoso"}),
    ((0, None), {"tenant": "contoso"}),
    ((NOW, "bad address"), {"tenant": "contoso", "forwarded": True, "spf_pass": True, "recipients": 4}),
]
out["check"] = [e.check(*a, **k).to_dict() for a, k in cases]
out["evaluate"] = [e.evaluate(*a, **k).to_dict() for a, k in cases[:4]]
out["spam"] = e.evaluate(NOW, "x@evil.example", tenant="contoso", verdict="spam").to_dict()
errors = []
for args, kwargs in [
    ((-1, "a@contoso.com"), {}),
    ((True, "a@contoso.com"), {}),
    ((NOW, "a@contoso.com"), {"tenant": "\ud800"}),
    ((NOW, "\ud800@contoso.com"), {}),
    ((NOW, "a@contoso.com"), {"auth_user": "\udcff"}),
]:
    try:
        e.check(*args, **kwargs)
    except Exception as err:
        errors.append(type(err).__name__ + ": " + str(err))
    else:
        errors.append("no error")
for kwargs in [{"verdict": "nope"}, {"verdict": 3}, {"verdikt": "spam"}]:
    try:
        e.evaluate(NOW, "a@contoso.com", tenant="contoso", **kwargs)
    except Exception as err:
        errors.append(type(err).__name__ + ": " + str(err))
try:
    e.check(NOW, "a@contoso.com", verdict="spam")
except TypeError as err:
    errors.append(str(err))
out["errors"] = errors
# The Decision keeps the caller's own tenant str when it names the tenant (no new string).
name = "".join(["con", "toso"])
d = e.check(NOW, "a@contoso.com", tenant=name)
out["same_object"] = d.tenant is name
d = e.evaluate(NOW, "a@contoso.com", tenant=name)
out["same_object_evaluate"] = d.tenant is name
out["auth_tenant"] = e.check(NOW, "a@contoso.com", auth_user="a@contoso.com").tenant
print(json.dumps(out))
"""


def run_scalar(convention: str) -> dict[str, object]:
    env = dict(os.environ, OUTGUARD_CHECK_CALL=convention, PYTHONPATH=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", SCALAR_CASES], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_scalar_paths_agree() -> None:
    fast, slow = run_scalar("default"), run_scalar("varargs")
    # 3.10+ on unix lends str text; the 3.9 path (forced here) copies it into bytes.
    assert slow["lent"] is False
    if sys.version_info >= (3, 10) and os.name == "posix":
        assert fast["lent"] is True
    for key in ["check", "evaluate", "spam", "errors", "same_object", "same_object_evaluate", "auth_tenant"]:
        assert fast[key] == slow[key], key
    checks = fast["check"]
    assert isinstance(checks, list)
    assert [(c["tenant"], c["attribution"], c["code"]) for c in checks] == [
        ("contoso", "explicit", None),
        ("contoso", "explicit", None),
        ("contoso", "auth_user", None),
        (None, None, "5.7.64"),
        ("contoso", "certificate", None),
        ("contoso", "ip_connector", None),
        (None, None, "5.7.64"),
        (None, None, "5.7.64"),
        ("contoso", "explicit", "5.7.708"),
        ("contoso", "explicit", None),
        ("contoso", "explicit", None),
        ("contoso", "explicit", None),
        ("contoso", "explicit", None),
        (None, None, "5.1.7"),
    ]
    assert fast["same_object"] is True and fast["same_object_evaluate"] is True
    assert fast["auth_tenant"] == "contoso"
    errors = fast["errors"]
    assert isinstance(errors, list)
    assert errors[0].startswith("ValueError: now: -1 is negative")
    assert errors[2].startswith("UnicodeEncodeError")
    assert errors[3].startswith("UnicodeEncodeError")
    assert errors[4].startswith("UnicodeEncodeError")
    assert errors[5].startswith("ValueError") and "nope" in errors[5]
    assert errors[6].startswith("TypeError: verdict: expected str")
    assert errors[7] == "TypeError: evaluate() got an unexpected keyword argument 'verdikt'"
    assert errors[8] == "check() got an unexpected keyword argument 'verdict'"


def test_tenant_reused(engine: outguard.Engine) -> None:
    name = "".join(["con", "toso"])  # not interned: a str of its own
    d = engine.check(NOW, "a@contoso.com", tenant=name)
    assert d.tenant == "contoso" and d.tenant is name
    assert repr(d).count('tenant="contoso" (explicit)') == 1
    assert d.to_dict()["tenant"] == "contoso"
    # Attributed another way: the tenant's id, not the argument.
    d = engine.check(NOW, "a@contoso.com", auth_user="a@contoso.com", tenant=None)
    assert d.tenant == "contoso"
    # A tenant argument that names no tenant is not the decision's tenant.
    d = engine.check(NOW, "a@contoso.com", tenant="nobody")
    assert d.tenant is None and d.code == "5.7.64"


def test_shared_check_tenant(tmp_path: Path, policy: outguard.Policy) -> None:
    image, state = tmp_path / "p.ogimg", tmp_path / "p.ogstate"
    outguard.SharedEngine.compile(policy, image)
    outguard.SharedEngine.create_state(image, state)
    e = outguard.SharedEngine(image, state)
    name = "".join(["con", "toso"])
    d = e.check(NOW, "a@contoso.com", tenant=name)
    assert d.tenant is name and d.accepted
    assert e.check(NOW, "a@contoso.com", auth_user="a@contoso.com").tenant == "contoso"
    with pytest.raises(TypeError, match="unexpected keyword argument 'verdict'"):
        e.check(NOW, "a@contoso.com", verdict="spam")  # type: ignore[call-arg]


def test_floors(engine: outguard.Engine) -> None:
    assert engine._check_floor(NOW, "a@contoso.com", tenant="contoso") is None
    assert engine._read_floor(NOW, "a@contoso.com", tenant="contoso") is None
    with pytest.raises(UnicodeEncodeError):
        engine._read_floor(NOW, "a@contoso.com", tenant="\ud800")


def arrow_text(pa: object, offsets: list[int], data: bytes, large: bool = False) -> object:
    import numpy as np

    pa_ = pa  # for mypy: pyarrow has no stubs
    dtype = np.int64 if large else np.int32
    typ = pa_.large_string() if large else pa_.string()  # type: ignore[attr-defined]
    return pa_.Array.from_buffers(  # type: ignore[attr-defined]
        typ, len(offsets) - 1, [None, pa_.py_buffer(np.array(offsets, dtype=dtype).tobytes()), pa_.py_buffer(data)]  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize("large", [False, True])
def test_arrow_text_checked_at_value_boundaries(engine: outguard.Engine, large: bool) -> None:
    pa = pytest.importorskip("pyarrow")
    # The whole buffer is UTF-8 ("é" is 2 bytes), but the offsets split the character.
    split = arrow_text(pa, [0, 7, 8, 9], "contosoé".encode(), large)
    with pytest.raises(ValueError, match=r"tenant\[1\]: not valid UTF-8"):
        engine.check_batch([NOW] * 3, ["a@contoso.com"] * 3, tenant=split)
    with pytest.raises(ValueError, match=r"auth_user\[1\]: not valid UTF-8"):
        engine.check_batch([NOW] * 3, ["a@contoso.com"] * 3, auth_user=split)
    # Not UTF-8 at all, past the first group of 256 messages.
    n = 300
    data = b"contoso" * (n - 1) + b"\xff"
    bad = arrow_text(pa, [7 * i for i in range(n)] + [7 * (n - 1) + 1], data, large)
    with pytest.raises(ValueError, match=rf"tenant\[{n - 1}\]: not valid UTF-8"):
        engine.check_batch([NOW] * n, ["a@contoso.com"] * n, tenant=bad)
    # Whole characters: decided as the scalar call decides them.
    ok = arrow_text(pa, [0, 7, 14, 21], "contosocöntosotrial..".encode()[:21], large)
    r = engine.check_batch([NOW] * 3, ["a@contoso.com"] * 3, tenant=ok)
    values = ok.to_pylist()  # type: ignore[attr-defined]
    assert r.tenant == [engine.check(NOW, "a@contoso.com", tenant=t).tenant for t in values]


def test_text_columns_across_chunks_slices_and_nulls(engine: outguard.Engine) -> None:
    pa = pytest.importorskip("pyarrow")
    np = pytest.importorskip("numpy")
    n = 700
    tenants: list[str | None] = [["contoso", "trial", None, "", "cöntoso", "lapsed"][i % 6] for i in range(n)]
    senders = [["a@contoso.com", "z@trial.example", "jörg@bücher.example", "bad"][i % 4] for i in range(n)]
    auth: list[str | None] = [[None, "w@bücher.example", "a@contoso.com"][i % 3] for i in range(n)]
    times = [NOW + i for i in range(n)]
    expect = [
        engine.check(times[i], senders[i], tenant=tenants[i], auth_user=auth[i]).to_dict() for i in range(n)
    ]
    chunked = pa.chunked_array([pa.array(tenants[:100]), pa.array(tenants[100:357]), pa.array(tenants[357:])])
    sliced = pa.array(["pad"] * 5 + tenants)[5:]  # non-zero offset
    no_nulls = [t if t is not None else "" for t in tenants]
    forms = [
        chunked,
        sliced,
        pa.array(tenants, pa.large_string()),
        pa.array(tenants, pa.string_view()),
        np.array(no_nulls),
        np.array([t.encode() for t in no_nulls], dtype="S"),
        no_nulls,
    ]
    for form in forms:
        r = engine.check_batch(times, pa.array(senders), tenant=form, auth_user=pa.array(auth))
        got = [r.decision(i).to_dict() for i in range(n)]
        if form is forms[-1] or isinstance(form, np.ndarray):
            want = [
                engine.check(times[i], senders[i], tenant=no_nulls[i], auth_user=auth[i]).to_dict()
                for i in range(n)
            ]
        else:
            want = expect
        assert got == want, type(form)
