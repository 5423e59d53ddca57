#!/usr/bin/env python3
"""Per-call cost of the Python binding over the core, with the core measured in the same run.

    python python/bench/overhead.py [--tenants N] [--batch N] [--repeat N]

Prints, in nanoseconds (best of several repeats; the machine is shared, so compare figures
within one run, not across runs):

- floors: an empty Python function call, a no-op extension method (``len(engine)``), a
  no-op extension method with ``check``'s signature called with the same arguments
  (``Engine._call_floor``: the interpreter's call plus PyO3's argument handling, nothing
  converted, ``None`` returned), the same through ``check``'s own hand-made call path
  (``Engine._check_floor``: arguments matched to parameters, nothing converted), and that
  path plus every argument converted into a message, not decided (``Engine._read_floor``);
- scalar ``check``: Python time per call, the core ``Engine::check`` of the same message timed
  in a loop inside Rust (``Engine._core_check_ns``), and the difference (the overhead); the
  last row is the benchmark report's "Python Engine.check, hot" message (``scripts/bench``);
- batch ``check_batch`` and ``replay`` per message, for each input form (lists, numpy arrays,
  pyarrow arrays when pyarrow is installed), beside the core's part of the same batch timed
  inside Rust (``Engine._core_batch_ns``: ``check_batch_at`` over the converted messages
  into a vector of every decision, client IPs given as text parsed by the core's
  ``cidr::parse_ip`` inside the timing, or the ``evaluate`` loop), and the difference per
  message; then the cost of taking the results out (``Replay.array`` and the list-returning
  columns).
"""

from __future__ import annotations

import argparse
import platform
import timeit
from typing import Any, Callable

import outguard

NOW = 1_790_000_000
#: The policy of the benchmark report's Python rows (scripts/bench; benches/src/cabi.rs, policy(1)).
HOT_POLICY = (
    '[[tenants]]\nid = "tenant-0000000"\n'
    'domains = ["t0.example.com", { name = "mail-t0.example.net", subdomains = true }]\n'
)


def policy(tenants: int) -> outguard.Policy:
    lines = ['[rules.low_reputation_ip]\nranges = ["198.51.100.0/24"]\n']
    for i in range(tenants):
        lines.append(f'[[tenants]]\nid = "t{i}"\ndomains = ["t{i}.example"]\n')
    return outguard.Policy.from_toml("\n".join(lines), "bench.toml")


def per_call(stmt: str, env: dict[str, object], number: int, repeat: int) -> float:
    t = min(timeit.repeat(stmt, globals=env, number=number, repeat=repeat))
    return t / number * 1e9


def best(f: Callable[[], Any], repeat: int) -> float:
    return min(timeit.repeat(f, number=1, repeat=repeat))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    pol = policy(a.tenants)
    eng = outguard.Engine(pol)
    rep = a.repeat
    print(
        f"outguard {outguard.__version__} on {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}; {a.tenants} tenants, batches of {a.batch}; best of {rep}"
    )

    def noop() -> None:
        pass

    env: dict[str, object] = {"eng": eng, "noop": noop, "NOW": NOW}
    print("floors")
    ten = (
        "(NOW, 'a@t1.example', tenant='t1', client_ip='203.0.113.5', auth_user='a@t1.example',"
        " cert_domain=None, forwarded=False, spf_pass=False, dkim_pass=False, recipients=1)"
    )
    two = "(NOW, 'a@t1.example', tenant='t1')"
    for name, stmt in [
        ("empty Python function call", "noop()"),
        ("extension no-op call (len(engine))", "len(eng)"),
        ("PyO3 no-op, check's signature, 2 fields", "eng._call_floor" + two),
        ("PyO3 no-op, check's signature, 10 fields", "eng._call_floor" + ten),
        ("check's call path, no-op, 2 fields", "eng._check_floor" + two),
        ("check's call path, no-op, 10 fields", "eng._check_floor" + ten),
        ("check's call path + conversions, 2 fields", "eng._read_floor" + two),
        ("check's call path + conversions, 10 fields", "eng._read_floor" + ten),
    ]:
        print(f"  {name:<44} {per_call(stmt, env, 200_000, rep):9.1f} ns")

    print("scalar check            python      core  overhead")
    # The benchmark report's "Python Engine.check, hot" message (scripts/bench): its own
    # one-tenant policy, the tenant named and a client address as text.
    hot = outguard.Engine(outguard.Policy.from_toml(HOT_POLICY))
    scalar: list[tuple[str, outguard.Engine, str, str, dict[str, Any]]] = [
        ("check(now, mail_from, tenant=)", eng, "eng.check(NOW, 'a@t1.example', tenant='t1')", "a@t1.example", {"tenant": "t1"}),
        (
            "check, all ten fields",
            eng,
            "eng.check(NOW, 'a@t1.example', tenant='t1', client_ip='203.0.113.5', auth_user='a@t1.example',"
            " cert_domain=None, forwarded=False, spf_pass=False, dkim_pass=False, recipients=1)",
            "a@t1.example",
            {"tenant": "t1", "client_ip": "203.0.113.5", "auth_user": "a@t1.example"},
        ),
        (
            "check, attributed by auth_user",
            eng,
            "eng.check(NOW, 'a@t1.example', auth_user='a@t1.example')",
            "a@t1.example",
            {"auth_user": "a@t1.example"},
        ),
        (
            "check, report's hot (client_ip)",
            hot,
            'hot.check(NOW, "alice@t0.example.com", tenant="tenant-0000000", client_ip="203.0.113.5")',
            "alice@t0.example.com",
            {"tenant": "tenant-0000000", "client_ip": "203.0.113.5"},
        ),
    ]
    env["hot"] = hot
    for name, engine, stmt, sender, kw in scalar:
        py_ns = per_call(stmt, env, 100_000, rep)
        core_ns = engine._core_check_ns(200_000, rep, NOW, sender, **kw)
        print(f"  {name:<32} {py_ns:8.1f} {core_ns:9.1f} {py_ns - core_ns:9.1f} ns")

    n = a.batch
    times = [NOW + i for i in range(n)]
    senders = [f"u{i % 50}@t{i % a.tenants}.example" for i in range(n)]
    tenants = [f"t{i % a.tenants}" for i in range(n)]
    forms: list[tuple[str, Any, Any, Any]] = [("lists", times, senders, tenants)]
    try:
        import numpy as np

        forms.append(("numpy (int64, U)", np.array(times, dtype=np.int64), np.array(senders), np.array(tenants)))
        forms.append(
            ("numpy (uint64, S)", np.array(times, dtype=np.uint64), np.array(senders, dtype="S"), np.array(tenants, dtype="S"))
        )
    except ImportError:
        print("  (numpy not installed)")
    try:
        import pyarrow as pa

        forms.append(("pyarrow (int64, string)", pa.array(times, pa.int64()), pa.array(senders), pa.array(tenants)))
        forms.append(
            ("pyarrow (large_string)", pa.array(times, pa.int64()), pa.array(senders, pa.large_string()),
             pa.array(tenants, pa.large_string()))
        )
    except ImportError:
        print("  (pyarrow not installed)")

    print("batch, per message      python      core  overhead")
    for form, t, s, ten in forms:
        py_ns = best(lambda: eng.check_batch(t, s, tenant=ten), rep) / n * 1e9
        core_ns = eng._core_batch_ns(rep, False, t, s, tenant=ten)
        print(f"  check_batch, {form:<24} {py_ns:7.1f} {core_ns:9.1f} {py_ns - core_ns:9.1f} ns")
    if "pa" in dir():
        # The benchmark report's batch row: client IPs as text (the core's baseline parses them too).
        ips = pa.array([f"203.0.113.{i % 200}" for i in range(n)])
        t, s, ten = forms[-2][1:]
        py_ns = best(lambda: eng.check_batch(t, s, tenant=ten, client_ip=ips), rep) / n * 1e9
        core_ns = eng._core_batch_ns(rep, False, t, s, tenant=ten, client_ip=ips)
        print(f"  check_batch, {'pyarrow + client_ip text':<24} {py_ns:7.1f} {core_ns:9.1f} {py_ns - core_ns:9.1f} ns")
    for form, t, s, ten in forms[:1] + forms[-1:]:
        times_py: list[float] = []
        times_core: list[float] = []
        for _ in range(max(1, rep // 2)):
            e1 = outguard.Engine(pol)
            times_py.append(best(lambda: e1.replay(t, s, tenant=ten), 1) / n * 1e9)
            e2 = outguard.Engine(pol)
            times_core.append(e2._core_batch_ns(1, True, t, s, tenant=ten))
        py_ns, core_ns = min(times_py), min(times_core)
        print(f"  replay, {form:<29} {py_ns:7.1f} {core_ns:9.1f} {py_ns - core_ns:9.1f} ns")

    r = eng.check_batch(*forms[-1][1:3], tenant=forms[-1][3])
    print("taking results out, per message")
    for name, f in [
        ("Replay.array('accepted')", lambda: r.array("accepted")),
        ("Replay.array('code') (codes)", lambda: r.array("code")),
        ("Replay.array('tenant') (codes)", lambda: r.array("tenant")),
        ("Replay.accepted (list)", lambda: r.accepted),
        ("Replay.tenant (list)", lambda: r.tenant),
    ]:
        print(f"  {name:<44} {best(f, rep) / n * 1e9:9.2f} ns")


if __name__ == "__main__":
    main()
