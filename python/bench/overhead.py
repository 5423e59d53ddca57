#!/usr/bin/env python3
"""Per-call cost of the Python binding, with baselines measured in the same run.

    python python/bench/overhead.py [--tenants N] [--batch N]

Prints, in nanoseconds:
- a no-op method call of the extension (``len(engine)``: the PyO3 call floor) and an empty
  Python function call;
- scalar ``check`` with two keyword fields (the usual analysis-script call), and with all ten;
- batch ``check_batch`` and ``replay`` per message (column conversion + GIL-released loop),
  from Python lists of strings;
- the same batch with the conversion excluded is not measurable from Python: the Rust side
  of that figure is the core's own ``check`` benchmark (benches/).

The machine is shared: compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import platform
import timeit

import outguard

NOW = 1_790_000_000


def policy(tenants: int) -> outguard.Policy:
    lines = ['[rules.low_reputation_ip]\nranges = ["198.51.100.0/24"]\n']
    for i in range(tenants):
        lines.append(f'[[tenants]]\nid = "t{i}"\ndomains = ["t{i}.example"]\n')
    return outguard.Policy.from_toml("\n".join(lines), "bench.toml")


def per_call(stmt: str, env: dict[str, object], number: int) -> float:
    t = min(timeit.repeat(stmt, globals=env, number=number, repeat=5))
    return t / number * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=100_000)
    a = ap.parse_args()
    eng = outguard.Engine(policy(a.tenants))
    n = a.batch
    times = [NOW + i for i in range(n)]
    senders = [f"u{i % 50}@t{i % a.tenants}.example" for i in range(n)]
    tenants = [f"t{i % a.tenants}" for i in range(n)]

    def noop() -> None:
        pass

    env: dict[str, object] = {"eng": eng, "noop": noop, "NOW": NOW}
    rows = [
        ("empty Python function call", per_call("noop()", env, 200_000)),
        ("extension no-op call (len(engine))", per_call("len(eng)", env, 200_000)),
        ("check(now, mail_from, tenant=)", per_call("eng.check(NOW, 'a@t1.example', tenant='t1')", env, 100_000)),
        (
            "check with all ten fields",
            per_call(
                "eng.check(NOW, 'a@t1.example', tenant='t1', client_ip='203.0.113.5', auth_user='a@t1.example',"
                " cert_domain=None, forwarded=False, spf_pass=False, dkim_pass=False, recipients=1)",
                env,
                50_000,
            ),
        ),
        ("evaluate(now, mail_from, tenant=)", per_call("eng.evaluate(NOW, 'a@t1.example', tenant='t1')", env, 50_000)),
    ]
    env.update(times=times, senders=senders, tenants=tenants)
    batch_check = min(timeit.repeat("eng.check_batch(times, senders, tenant=tenants)", globals=env, number=1, repeat=3))
    rows.append(("check_batch, per message", batch_check / n * 1e9))
    fresh = {"outguard": outguard, "pol": policy(a.tenants), "times": times, "senders": senders, "tenants": tenants}
    rep = min(
        timeit.repeat(
            "eng.replay(times, senders, tenant=tenants)",
            setup="eng = outguard.Engine(pol)",
            globals=fresh,
            number=1,
            repeat=3,
        )
    )
    rows.append(("replay (evaluate), per message", rep / n * 1e9))
    print(f"outguard {outguard.__version__} on {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}; {a.tenants} tenants, batches of {n}")
    for name, ns in rows:
        print(f"  {name:<40} {ns:9.1f} ns")
    floor = rows[1][1]
    print(f"  scalar check overhead over the extension call floor: {rows[2][1] - floor:.1f} ns")


if __name__ == "__main__":
    main()
