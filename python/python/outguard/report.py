"""What-if replay of a mail log through a policy, and its per-tenant summary.

``replay_log`` feeds the log's messages to ``Engine.replay`` in time order (in chunks, so a
progress bar can move; the engine's state carries over from chunk to chunk) and gathers what
happened into a ``ReplayResult``: the decision columns, the events, and per tenant the blocks
(when, which rule, the counters at that moment, how it ended, how many messages they refused),
the refusals without a block (5.7.708, lapsed) and the monitor-mode would-be refusals.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO, Union

from . import _outguard as og
from ._progress import Advance
from .logs import LogData

__all__ = ["Block", "ReplayResult", "TenantReport", "format_summary", "replay_log", "write_ndrs"]

CODES = ("5.7.705", "5.7.708", "5.7.750", "5.7.64", "5.1.7")
RULE_CODE = {"tenant_threshold": "5.7.705", "unregistered_domain": "5.7.750", "low_reputation_ip": "5.7.708"}
CHUNK = 20_000


def iso(t: int) -> str:
    """``2026-03-02 09:14:01Z`` (``@<seconds>`` beyond the year 9999)."""
    try:
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"@{t}"


def duration(seconds: int) -> str:
    """``3d 4h``, ``2h 5m``, ``45s``."""
    d, rem = divmod(max(0, int(seconds)), 86_400)
    h, rem = divmod(rem, 3_600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h}h" if h else f"{d}d"
    if h:
        return f"{h}h {m}m" if m else f"{h}h"
    if m:
        return f"{m}m"
    return f"{s}s"


@dataclass
class Block:
    """One block of a tenant by a rule, from the event that tripped it to its end."""

    tenant: str
    rule: str
    code: str
    start: int
    #: When the block was to end when it tripped: Unix seconds, or "release".
    until: Union[int, str, None]
    #: The event that tripped it (counters at that moment).
    event: og.Event
    monitor: bool
    #: When it ended (released or expired), or None if it lasted to the end of the log.
    end: Optional[int] = None
    end_kind: Optional[str] = None
    #: Messages refused (or, in monitor mode, that would have been) because of it.
    refused: int = 0


@dataclass
class TenantReport:
    """What happened to one tenant."""

    tenant: str
    messages: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    #: Refusals by reason name (tenant_lapsed and tenant_threshold share 5.7.705).
    reasons: Counter[str] = field(default_factory=Counter)
    monitored: Counter[str] = field(default_factory=Counter)
    first_refused: Optional[int] = None
    last_refused: Optional[int] = None
    blocks: list[Block] = field(default_factory=list)
    warnings: list[og.Event] = field(default_factory=list)
    events: list[og.Event] = field(default_factory=list)
    #: Client IPs of 5.7.708 refusals.
    lowrep_ips: Counter[str] = field(default_factory=Counter)
    #: The first decision's counters: the tenant's limits.
    limits: Optional[og.Counters] = None

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


@dataclass
class ReplayResult:
    """Everything a replay produced. ``columns`` has one entry per message of ``data``."""

    data: LogData
    policy_file: str
    columns: dict[str, list[Any]]
    events: list[og.Event]
    event_message: list[int]
    tenants: dict[str, TenantReport]
    #: Events of the final sweep for timed blocks that ran out after the last message.
    final_events: list[og.Event] = field(default_factory=list)
    unattributed_ips: Counter[str] = field(default_factory=Counter)
    unattributed_domains: Counter[str] = field(default_factory=Counter)

    @property
    def blocks(self) -> list[Block]:
        out = [b for t in self.tenants.values() for b in t.blocks]
        return sorted(out, key=lambda b: (b.start, b.tenant))

    def refused(self) -> Counter[str]:
        return Counter(c for c in self.columns["code"] if c is not None)

    def ndr_candidates(self) -> list[int]:
        """Messages an NDR would go back for: refused, with a sender to send it to (never to
        the null sender, and not for a sender that cannot be parsed)."""
        out = []
        for i, code in enumerate(self.columns["code"]):
            if code is None or code == "5.1.7":
                continue
            if not self.data.columns["mail_from"][i].strip("<> "):
                continue
            out.append(i)
        return out


def replay_log(
    engine: og.Engine,
    data: LogData,
    advance: Optional[Advance] = None,
    chunk: int = CHUNK,
) -> ReplayResult:
    """Replays ``data`` (sorted by time) through ``engine``; the engine keeps the state."""
    cols = data.columns
    n = len(data)
    names = (
        "accepted",
        "code",
        "reason",
        "rule",
        "tenant",
        "sender_class",
        "monitored",
        "total",
        "suspicious",
        "unregistered",
        "limit",
    )
    out: dict[str, list[Any]] = {k: [] for k in names}
    events: list[og.Event] = []
    event_message: list[int] = []
    limits: dict[str, og.Counters] = {}
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        part = {k: cols[k][start:end] for k in cols if k not in ("rcpt_to",)}
        r = engine.replay(
            part["time"],
            part["mail_from"],
            verdict=part["verdict"],
            tenant=part["tenant"],
            client_ip=part["client_ip"],
            auth_user=part["auth_user"],
            cert_domain=part["cert_domain"],
            forwarded=part["forwarded"],
            spf_pass=part["spf_pass"],
            dkim_pass=part["dkim_pass"],
            recipients=part["recipients"],
        )
        d = r.to_dict()
        for k in names:
            out[k].extend(d[k])
        for i, t in enumerate(d["tenant"]):
            if t is not None and t not in limits:
                limits[t] = r.decision(i).counters
        events.extend(r.events)
        event_message.extend(start + i for i in r.event_message)
        if advance is not None:
            advance(end - start)
    last = cols["time"][-1] if n else 0
    final = engine.expire(last) if n else []
    result = ReplayResult(
        data=data,
        policy_file=engine.policy_file,
        columns=out,
        events=events,
        event_message=event_message,
        tenants={},
        final_events=final,
    )
    _summarise(result, limits)
    return result


def _summarise(res: ReplayResult, limits: dict[str, og.Counters]) -> None:
    cols, data = res.columns, res.data
    tenants = res.tenants

    def tenant(t: str) -> TenantReport:
        rep = tenants.get(t)
        if rep is None:
            rep = tenants[t] = TenantReport(t, limits=limits.get(t))
        return rep

    open_blocks: dict[tuple[str, str], Block] = {}

    def on_event(e: og.Event) -> None:
        rep = tenant(e.tenant)
        rep.events.append(e)
        key = (e.tenant, e.rule)
        if e.kind == "blocked":
            b = Block(e.tenant, e.rule, e.code, e.time, e.until, e, e.monitor)
            rep.blocks.append(b)
            open_blocks[key] = b
        elif e.kind in ("released", "expired"):
            ended = open_blocks.pop(key, None)
            if ended is not None:
                b = ended
                b.end_kind = e.kind
                # A timed block ends at its time, even if the event comes with a later message.
                b.end = min(e.time, b.until) if isinstance(b.until, int) and e.kind == "expired" else e.time
        elif e.kind == "warned":
            rep.warnings.append(e)

    k = 0
    ev, ev_msg = res.events, res.event_message
    for i in range(len(data)):
        t = cols["tenant"][i]
        code = cols["code"][i]
        now = data.columns["time"][i]
        if t is not None:
            rep = tenant(t)
            rep.messages += 1
            if code is None:
                rep.accepted += 1
            else:
                rep.refused[code] += 1
                rep.reasons[cols["reason"][i]] += 1
                rep.first_refused = now if rep.first_refused is None else rep.first_refused
                rep.last_refused = now
                rule = cols["rule"][i]
                b = open_blocks.get((t, rule)) if rule else None
                if b is not None and cols["reason"][i] != "tenant_lapsed":
                    b.refused += 1
                if code == "5.7.708" and data.columns["client_ip"][i]:
                    rep.lowrep_ips[data.columns["client_ip"][i]] += 1
            mon = cols["monitored"][i]
            if mon is not None:
                rep.monitored[mon] += 1
                rule = cols["rule"][i]
                b = open_blocks.get((t, rule)) if rule else None
                if b is not None and b.monitor:
                    b.refused += 1
        elif code == "5.7.64":
            ip = data.columns["client_ip"][i]
            if ip:
                res.unattributed_ips[ip] += 1
            sender = data.columns["mail_from"][i]
            if "@" in sender:
                res.unattributed_domains[sender.rsplit("@", 1)[1].strip("<>").lower()] += 1
        while k < len(ev) and ev_msg[k] <= i:
            on_event(ev[k])
            k += 1
    while k < len(ev):
        on_event(ev[k])
        k += 1
    for e in res.final_events:
        on_event(e)


# ----------------------------------------------------------------------------------------------
# Text


def _n(x: int) -> str:
    return f"{x:,}"


def _plural(n: int, word: str) -> str:
    return f"{_n(n)} {word}" + ("" if n == 1 else "s")


def _until(u: Union[int, str, None]) -> str:
    if u == "release":
        return "until released"
    if isinstance(u, int):
        return f"until {iso(u)}"
    return ""


def _at_block(b: Block, limits: Optional[og.Counters]) -> str:
    e = b.event
    if b.rule == "tenant_threshold":
        ratio = e.suspicious / e.total if e.total else 0.0
        s = f"{_n(e.suspicious)} of {_n(e.total)} messages suspicious ({ratio:.0%}) within the window"
        if limits is not None:
            s += (
                f"; trips at >= {_n(limits.min_suspicious)} suspicious of >= {_n(limits.min_messages)}"
                f" messages and ratio >= {limits.max_ratio:.0%}"
            )
        return s
    s = f"{_n(e.unregistered)} messages from unregistered domains within the window"
    if limits is not None:
        s += f" (allowance {_n(limits.limit)})"
    return s


def format_summary(res: ReplayResult, ndr_note: str = "", limit: int = 20) -> str:
    """The per-tenant summary a person reads: what was blocked, when, why, what it refused."""
    data = res.data
    cols = res.columns
    lines: list[str] = []
    w = lines.append
    n = len(data)
    w(f"outguard replay: {data.path} ({data.format}), policy {res.policy_file}")
    if n:
        t0, t1 = data.columns["time"][0], data.columns["time"][-1]
        w(
            f"{_n(n)} messages from {iso(t0)} to {iso(t1)} ({duration(t1 - t0)}), "
            f"{_n(len(res.tenants))} tenants"
        )
    else:
        w("no messages")
    skipped = []
    if data.inbound:
        skipped.append(f"{_n(data.inbound)} inbound (local delivery only)")
    if data.incomplete:
        skipped.append(f"{_n(data.incomplete)} without a sender")
    if skipped:
        w("skipped: " + ", ".join(skipped))
    refused = res.refused()
    total_refused = sum(refused.values())
    parts = [f"{c}: {_n(refused[c])}" for c in CODES if refused[c]]
    w(f"accepted {_n(n - total_refused)}, refused {_n(total_refused)}" + (f" ({', '.join(parts)})" if parts else ""))
    monitored = Counter(c for c in cols["monitored"] if c is not None)
    if monitored:
        w("monitor mode, would have refused: " + ", ".join(f"{c}: {_n(v)}" for c, v in sorted(monitored.items())))

    classes = Counter(c for c in cols["sender_class"] if c is not None)
    if classes:
        w(
            "sender classes: "
            + ", ".join(f"{c} {_n(classes[c])}" for c in ("registered", "exempt", "unregistered", "null") if classes[c])
            + " (exempt: forwarded mail that passed SPF or DKIM, certificate connectors)"
        )

    blocks = res.blocks
    w("")
    if not blocks:
        w("No tenant was blocked.")
    else:
        order: list[str] = []
        for b in blocks:
            if b.tenant not in order:
                order.append(b.tenant)
        w(f"Blocked tenants ({len(order)}):")
        for t in order:
            rep = res.tenants[t]
            for rule in ("tenant_threshold", "unregistered_domain"):
                bs = [b for b in rep.blocks if b.rule == rule]
                if not bs:
                    continue
                mon = bs[0].monitor
                verb = "would have refused" if mon else "refused"
                w(
                    f"  {t}: {bs[0].code} {rule}{' [monitor mode: nothing refused]' if mon else ''}, "
                    f"{_plural(len(bs), 'block')}, {_n(sum(b.refused for b in bs))} messages {verb}"
                )
                for b in bs:
                    if b.end is not None:
                        end = f"{b.end_kind} {iso(b.end)} (after {duration(b.end - b.start)})"
                    elif b.until == "release":
                        end = "until released: still blocked at the end of the log"
                    else:
                        end = f"{_until(b.until)}: still blocked at the end of the log"
                    w(f"    blocked {iso(b.start)}, {end}; {verb} {_n(b.refused)}")
                    w(f"      why: {_at_block(b, rep.limits)}")

    # Refusals that no block explains: low-reputation IPs, lapsed subscriptions.
    other = []
    for rep in sorted(res.tenants.values(), key=lambda r: (-r.refused_total, r.tenant)):
        for reason in ("low_reputation_ip", "tenant_lapsed"):
            cnt = rep.reasons.get(reason, 0)
            if not cnt:
                continue
            if reason == "low_reputation_ip":
                ips = ", ".join(ip for ip, _ in rep.lowrep_ips.most_common(3))
                other.append(f"  {rep.tenant}: 5.7.708 low_reputation_ip, {_n(cnt)} messages refused (client IPs {ips})")
            else:
                other.append(f"  {rep.tenant}: 5.7.705 subscription lapsed, {_n(cnt)} messages refused")
            if rep.first_refused is not None and rep.last_refused is not None:
                other.append(f"    from {iso(rep.first_refused)} to {iso(rep.last_refused)}")
    if other:
        w("")
        w("Refused without a block:")
        lines.extend(other[: 2 * limit])
        if len(other) > 2 * limit:
            w(f"  ... and {(len(other) - 2 * limit) // 2} more")

    warned = [(rep.tenant, e) for rep in res.tenants.values() for e in rep.warnings]
    if warned:
        w("")
        w(f"Warnings (5.7.705 warning ratio crossed, no block) ({len(warned)}):")
        for t, e in sorted(warned, key=lambda x: x[1].time)[:limit]:
            ratio = e.suspicious / e.total if e.total else 0.0
            w(f"  {t}: {iso(e.time)}, {_n(e.suspicious)} of {_n(e.total)} suspicious ({ratio:.0%})")
        if len(warned) > limit:
            w(f"  ... and {len(warned) - limit} more")

    if refused.get("5.7.64"):
        w("")
        w(f"Unattributed (5.7.64): {_plural(refused['5.7.64'], 'message')} of no tenant")
        if res.unattributed_ips:
            w("  top client IPs: " + ", ".join(f"{ip} ({_n(c)})" for ip, c in res.unattributed_ips.most_common(5)))
        if res.unattributed_domains:
            w(
                "  top sender domains: "
                + ", ".join(f"{d} ({_n(c)})" for d, c in res.unattributed_domains.most_common(5))
            )
    if refused.get("5.1.7"):
        w("")
        w(f"Invalid sender (5.1.7): {_plural(refused['5.1.7'], 'message')}")

    if data.malformed:
        w("")
        w(f"Malformed log lines: {_n(len(data.malformed))} (skipped)")
        for m in data.malformed[:limit]:
            w(f"  {m}")
        if len(data.malformed) > limit:
            w(f"  ... and {_n(len(data.malformed) - limit)} more")

    w("")
    cand = len(res.ndr_candidates())
    w(f"NDRs: {_n(cand)} would have been sent" + (f" {ndr_note}" if ndr_note else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# NDRs

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_ndrs(
    res: ReplayResult,
    directory: str,
    lang: str = "en",
    reporting_mta: str = "localhost",
    advance: Optional[Advance] = None,
    err: Optional[TextIO] = None,
) -> int:
    """Writes one ``.eml`` file per NDR into ``directory``; returns how many were written."""
    os.makedirs(directory, exist_ok=True)
    data = res.data
    written = 0
    for i in res.ndr_candidates():
        reason = res.columns["reason"][i]
        code = res.columns["code"][i]
        tenant = res.columns["tenant"][i] or "unattributed"
        t = data.columns["time"][i]
        try:
            text = og.render_ndr(
                reason,
                to=data.columns["mail_from"][i].strip("<>"),
                recipients=data.columns["rcpt_to"][i] or [],
                now=t,
                arrival=t,
                lang=lang,
                reporting_mta=reporting_mta,
            )
        except ValueError as e:
            if err is not None:
                print(f"outguard: no NDR for log line {data.lines[i]}: {e}", file=err)
            continue
        name = f"{i + 1:07d}-{code}-{_SAFE.sub('_', tenant)[:60]}.eml"
        with open(os.path.join(directory, name), "wb") as f:
            f.write(text.encode("utf-8"))
        written += 1
        if advance is not None:
            advance(1)
    return written
