"""The ``outguard`` command: what-if replays of mail logs, single checks, explanations and
compiled policy images for shared state.

Exit codes (for scripts):
  0  success; for ``check``: the message is accepted
  1  ``check`` only: the message is refused (the reply line is printed)
  2  usage error, a policy that does not load, an unreadable log or state file, an image
     or shared state file that cannot be written or is refused
  3  an unexpected error (a bug; the traceback is printed): never 1, which means refused
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Optional, Sequence

from . import _outguard as og
from ._progress import progress_bar
from .logs import LogError, TenantMap, parse_time, read_log

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_BUG = 3

_EPILOG = """exit codes: 0 ok (check: accepted), 1 check: refused, 2 usage, policy or input error,
3 unexpected error (a bug)"""

_REPLAY_HELP = """\
Replays a mail log through a policy with the log's own timestamps and reports, per tenant,
what would have been blocked, when, by which rule, and how many messages would have been
refused; the NDRs that would have been sent; optionally a figure.

Log formats (--format, guessed from the name and first line):
  csv      header line; columns time (Unix seconds or RFC 3339), mail_from, and optionally
           tenant, client_ip, auth_user, cert_domain, forwarded, spf_pass, dkim_pass
           (true/false), recipients (count), verdict (clean|spam|bulk|phish|malware),
           rcpt_to (addresses, for NDRs); unknown columns are ignored
  jsonl    one JSON object a line with the same keys
  maillog  Postfix syslog lines joined by queue id: smtpd client= (IP, sasl_username),
           qmgr from= (sender, nrcpt), cleanup header_checks WARN lines for the verdict
           (X-Spam-Flag: YES -> spam, Precedence: bulk -> bulk, X-Outguard-Verdict: V),
           local "forwarded as" (forwarded mail), opendkim (DKIM pass), amavis verdicts;
           inbound mail (local delivery only) is skipped. Timestamps from the syslog
           prefix: give --year (and --utc-offset) for "Mar  2 09:14:01" lines.
See the outguard.logs module documentation for every detail.

Malformed lines are skipped, counted and listed with their line numbers."""


_COMPILE_HELP = """\
Compiles a policy into a flat, checksummed image that processes map and use in place
(outguard.SharedEngine, C og_shared_engine_open, the Exim ${dlfunc}), and verifies the written file.

With --state FILE, the state file that holds the counters follows the new image:
  - FILE missing: a new state file for the image (zero counters);
  - FILE present: its counters, blocks, grace periods and audit trails move to the new image
    for every tenant that remains (others are dropped, new ones start at zero); processes
    using it switch on their next call.

IMAGE must be a new path: a state file names the image it belongs to, so replacing an image
in use (--force) leaves its state files unusable; compile each policy to a new file and move
the state with --state.

Example (rolling out a policy change):
  outguard compile policy.toml -o /var/lib/outguard/policy-2.ogp --state /var/lib/outguard/state"""


def _offset(text: str) -> int:
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected an offset such as +02:00, got {text!r}")
    sec = int(m.group(2)) * 3600 + int(m.group(3)) * 60
    return -sec if m.group(1) == "-" else sec


def _time_arg(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="outguard",
        description="outguard: outbound-mail abuse guard (5.7.705, 5.7.708, 5.7.750). "
        "What-if replays of mail logs, single checks, explanations and compiled policy images.",
        epilog=_EPILOG,
    )
    p.add_argument("--version", action="version", version=f"outguard {og.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "replay",
        help="replay a mail log through a policy and report what would have been blocked",
        description=_REPLAY_HELP,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("log", metavar="LOG", help="the log file (.gz works; '-' reads standard input)")
    r.add_argument("--policy", required=True, metavar="FILE", help="the policy file (TOML)")
    r.add_argument("--format", choices=("auto", "csv", "jsonl", "maillog"), default="auto", help="log format (default: auto)")
    r.add_argument("--tenant-map", metavar="FILE", help="lines 'KEY TENANT', KEY a SASL login or a domain: the tenant of messages without one")
    r.add_argument("--year", type=int, metavar="YYYY", help="year of syslog timestamps without one (default: this year)")
    r.add_argument("--utc-offset", type=_offset, default=0, metavar="+HH:MM", help="offset of syslog timestamps without one (default +00:00)")
    r.add_argument("--ndr-dir", metavar="DIR", help="write the NDRs that would have been sent, one .eml file each")
    r.add_argument("--lang", default="en", help="language of the NDRs: en, uk, pl, pt-BR (default en)")
    r.add_argument("--reporting-mta", default="localhost", metavar="HOST", help="Reporting-MTA of the NDRs")
    r.add_argument("--plot", metavar="PNG", help="write a figure: windowed counts against thresholds per blocked tenant")
    r.add_argument("--plot-max", type=int, default=12, metavar="N", help="at most N panels in the figure (default 12)")
    r.add_argument("--state", metavar="FILE", help="start from this snapshot (from --save-state) instead of empty counters")
    r.add_argument("--save-state", metavar="FILE", help="write the engine's state after the replay (a snapshot)")
    r.add_argument("--json", metavar="FILE", help="also write the summary as JSON ('-' for standard output, instead of the text)")
    r.add_argument("--limit", type=int, default=20, metavar="N", help="list at most N entries per section (default 20)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")

    c = sub.add_parser(
        "check",
        help="decide one message against a policy (exit 0 accepted, 1 refused)",
        description="Decides one message with a fresh engine (or one restored with --state) and "
        "prints the decision. Exit 0 when accepted, 1 when refused, 2 on a usage or policy error.",
        epilog=_EPILOG,
    )
    c.add_argument("--policy", required=True, metavar="FILE", help="the policy file (TOML)")
    c.add_argument("--mail-from", required=True, metavar="ADDR", help="envelope sender ('' or '<>' for the null sender)")
    c.add_argument("--tenant", help="tenant id, if known")
    c.add_argument("--client-ip", metavar="IP")
    c.add_argument("--auth-user", metavar="LOGIN", help="SASL login")
    c.add_argument("--cert-domain", metavar="DOMAIN", help="TLS client certificate's domain")
    c.add_argument("--forwarded", action="store_true")
    c.add_argument("--spf-pass", action="store_true")
    c.add_argument("--dkim-pass", action="store_true")
    c.add_argument("--recipients", type=int, default=1, metavar="N")
    c.add_argument("--now", type=_time_arg, metavar="TIME", help="Unix seconds or RFC 3339 (default: now)")
    c.add_argument("--state", metavar="FILE", help="restore this snapshot first (blocks and counters)")
    c.add_argument("--explain", metavar="LANG", nargs="?", const="en", help="on refusal, also print the explanations (default en)")
    c.add_argument("--json", action="store_true", help="print the decision as JSON")

    k = sub.add_parser(
        "compile",
        help="compile a policy into an image for shared state (forking mail servers, Exim)",
        description=_COMPILE_HELP,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    k.add_argument("policy", metavar="POLICY", help="the policy file (TOML)")
    k.add_argument("-o", "--output", required=True, metavar="IMAGE", help="the image file to write: a new path (see --force)")
    k.add_argument(
        "--force",
        action="store_true",
        help="replace an existing IMAGE (atomically); state files of the image it replaces stop opening",
    )
    k.add_argument(
        "--state",
        metavar="FILE",
        help="also give this shared state file the new image: created if missing, otherwise its "
        "counters, blocks and audit trails move to the new image (tenants that remain keep them)",
    )

    e = sub.add_parser(
        "explain",
        help="explain a code (5.7.705, 5.7.708, 5.7.750, 5.7.64, 5.1.7)",
        description="Prints the explanation of a code for the sender (why did I get this) "
        "and/or the administrator (what can I do).",
        epilog=_EPILOG,
    )
    e.add_argument("code", metavar="CODE", help="5.7.705, 5.7.708, 5.7.750, 5.7.64, 5.1.7 (or a reason name such as tenant_lapsed)")
    e.add_argument("--lang", default="en", help="en, uk, pl or pt-BR (default en)")
    e.add_argument("--audience", choices=("sender", "admin", "both"), default="both", help="default: both")
    return p


def _err(msg: str) -> None:
    print(f"outguard: {msg}", file=sys.stderr)


def _load_policy(path: str) -> og.Policy:
    return og.Policy.load(path)


def _engine(policy: og.Policy, state: Optional[str]) -> og.Engine:
    if state is None:
        return og.Engine(policy)
    with open(state, "rb") as f:
        return og.Engine.restore(policy, f.read())


def _replay(a: argparse.Namespace) -> int:
    from .report import format_summary, replay_log, write_ndrs

    if a.plot:
        from .plot import available

        why = available()
        if why is not None:
            _err(f"--plot needs matplotlib (pip install matplotlib): {why}")
            return EXIT_USAGE
    policy = _load_policy(a.policy)
    engine = _engine(policy, a.state)
    tenant_map = TenantMap.load(a.tenant_map) if a.tenant_map else None
    show = sys.stderr.isatty() if a.progress is None else a.progress
    size: Optional[int] = None
    if a.log != "-" and not a.log.endswith(".gz"):
        try:
            size = os.path.getsize(a.log)
        except OSError:
            size = None
    with progress_bar("reading log", size, show and size is not None, unit="B") as adv:
        data = read_log(a.log, a.format, tenant_map, a.year, a.utc_offset, progress=adv)
    with progress_bar("replaying", len(data), show) as adv:
        res = replay_log(engine, data, advance=adv)
    note = ""
    if a.ndr_dir:
        cand = len(res.ndr_candidates())
        with progress_bar("writing NDRs", cand, show) as adv:
            n = write_ndrs(res, a.ndr_dir, a.lang, a.reporting_mta, advance=adv, err=sys.stderr)
        note = f"({n:,} written to {a.ndr_dir})"
    else:
        note = "(--ndr-dir DIR writes them as .eml files)"
    if a.json != "-":
        print(format_summary(res, note, limit=a.limit))
    if a.json:
        doc = _summary_json(res)
        if a.json == "-":
            json.dump(doc, sys.stdout, indent=2)
            print()
        else:
            with open(a.json, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2)
    if a.plot:
        from .plot import plot_blocks

        panels = plot_blocks(res, a.plot, max_panels=a.plot_max)
        print(f"figure: {a.plot} ({panels} panels)", file=sys.stderr if a.json == "-" else sys.stdout)
    if a.save_state:
        with open(a.save_state, "wb") as f:
            f.write(engine.snapshot())
    return EXIT_OK


def _summary_json(res: Any) -> dict[str, Any]:
    data = res.data
    return {
        "log": data.path,
        "format": data.format,
        "policy": res.policy_file,
        "messages": len(data),
        "refused": dict(res.refused()),
        "blocks": [
            {
                "tenant": b.tenant,
                "rule": b.rule,
                "code": b.code,
                "start": b.start,
                "until": b.until,
                "end": b.end,
                "end_kind": b.end_kind,
                "refused": b.refused,
                "monitor": b.monitor,
                "at_block": b.event.to_dict(),
            }
            for b in res.blocks
        ],
        "tenants": {
            t.tenant: {
                "messages": t.messages,
                "accepted": t.accepted,
                "refused": dict(t.refused),
                "reasons": dict(t.reasons),
                "monitored": dict(t.monitored),
            }
            for t in sorted(res.tenants.values(), key=lambda t: t.tenant)
            if t.refused or t.monitored or t.events
        },
        "malformed": [{"line": m.line, "reason": m.reason} for m in data.malformed],
        "ndrs": len(res.ndr_candidates()),
    }


def _check(a: argparse.Namespace) -> int:
    import time

    policy = _load_policy(a.policy)
    engine = _engine(policy, a.state)
    now = a.now if a.now is not None else int(time.time())
    d = engine.check(
        now,
        a.mail_from,
        tenant=a.tenant,
        client_ip=a.client_ip,
        auth_user=a.auth_user,
        cert_domain=a.cert_domain,
        forwarded=a.forwarded,
        spf_pass=a.spf_pass,
        dkim_pass=a.dkim_pass,
        recipients=a.recipients,
    )
    if a.json:
        print(json.dumps(d.to_dict(), indent=2))
    else:
        if d.accepted:
            line = "accepted"
            if d.monitored:
                line += f" (monitor mode: would be refused with {d.monitored_reply})"
        else:
            line = str(d.reply)
        print(line)
        if d.tenant is not None:
            print(f"tenant: {d.tenant} (by {d.attribution}); sender class: {d.sender_class}")
        else:
            print(f"tenant: none; sender class: {d.sender_class}")
        if not d.accepted and a.explain:
            code = d.reason or d.code or ""
            print()
            print(og.explain(code, lang=a.explain, audience="sender"))
            print()
            print(og.explain(code, lang=a.explain, audience="admin"))
    return EXIT_OK if d.accepted else EXIT_REFUSED


def _compile(a: argparse.Namespace) -> int:
    policy = _load_policy(a.policy)
    old_image: Optional[str] = None
    out_exists = os.path.lexists(a.output)
    if a.state is not None:
        if not os.path.lexists(a.state):
            where = os.path.dirname(a.state) or "."
            if not os.path.isdir(where):
                _err(f"{where}: no such directory (for the state file {a.state})")
                return EXIT_USAGE
        elif out_exists and os.path.samefile(a.state, a.output):
            _err(f"{a.output} is the state file; give the image its own path")
            return EXIT_USAGE
        else:
            # The image the state file belongs to (it must stay readable until the move is done).
            current = og.SharedEngine(None, a.state)
            old_image = os.fspath(current.image_path)
            del current  # its shared lock would keep the move from starting
            if out_exists and os.path.samefile(old_image, a.output):
                _err(
                    f"{a.output} is the image {a.state} uses; compile to a new path and the "
                    "state moves to it"
                )
                return EXIT_USAGE
    if out_exists and not a.force:
        _err(
            f"{a.output} exists; compile to a new path (a state file of the image there would "
            "stop opening), or give --force to replace it"
        )
        return EXIT_USAGE
    image_id = og.SharedEngine.compile(policy, a.output)
    size = os.path.getsize(a.output)
    print(
        f"compiled {a.policy} -> {a.output}: {len(policy.tenants):,} tenants, "
        f"{size:,} bytes, image id {image_id:016x}"
    )
    if a.state is None:
        return EXIT_OK
    if old_image is None:
        og.SharedEngine.create_state(a.output, a.state)
        print(f"state: {a.state} created (zero counters)")
    else:
        rep = og.SharedEngine.migrate(old_image, a.state, a.output, a.state)
        print(
            f"state: {a.state} moved from {old_image} to {a.output} "
            f"(tenants added: {len(rep.added):,}, removed: {len(rep.removed):,})"
        )
    return EXIT_OK


def _explain(a: argparse.Namespace) -> int:
    if a.audience in ("sender", "both"):
        if a.audience == "both":
            print(f"{og.title(a.code, a.lang)}\n")
        print(og.explain(a.code, lang=a.lang, audience="sender"))
    if a.audience == "both":
        print()
    if a.audience in ("admin", "both"):
        print(og.explain(a.code, lang=a.lang, audience="admin"))
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command; returns its exit code."""
    parser = _parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version (0) and usage errors (2)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if a.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if a.command == "replay":
            return _replay(a)
        if a.command == "check":
            return _check(a)
        if a.command == "compile":
            return _compile(a)
        return _explain(a)
    except og.PolicyError as e:
        _err(f"policy error:\n{e}")
        return EXIT_USAGE
    except og.SnapshotError as e:
        _err(f"state file: {e}")
        return EXIT_USAGE
    except LogError as e:
        _err(str(e))
        return EXIT_USAGE
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    except og.OutguardError as e:
        _err(str(e))
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        _err(f"{e.filename}: {e.strerror or e}" if e.filename else str(e))
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 - a bug; exit 1 would read as "refused"
        import traceback

        traceback.print_exc()
        _err("unexpected error (a bug): please report it with the traceback above")
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
