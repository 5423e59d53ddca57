"""Reading mail logs into message columns for ``Engine.replay``.

Three formats, chosen by ``--format`` or guessed from the file name and first line:

**CSV** (``.csv``): a header line, then one message a line. Columns (any order; only ``time``
and ``mail_from`` are required; unknown columns are ignored):

========== ===================================================================================
time        Unix seconds (``1772409241``, fractions ignored) or RFC 3339 with an offset
            (``2026-03-02T09:14:01Z``, ``2026-03-02T11:14:01+02:00``)
mail_from   envelope sender; empty or ``<>`` is the null sender
tenant      tenant id, when the log knows it (else attribution by auth_user, cert, IP)
client_ip   connecting client's IP address
auth_user   SASL login (``alice@contoso.com``)
cert_domain domain of the TLS client certificate
forwarded   ``true``/``false`` (also ``yes``/``no``, ``1``/``0``; empty is false)
spf_pass    same
dkim_pass   same
recipients  recipient count (empty is 1)
verdict     content filter verdict: ``clean`` (empty), ``spam``, ``bulk``, ``phish``, ``malware``
rcpt_to     recipient addresses, separated by spaces, ``,`` or ``;`` (used for NDRs only)
========== ===================================================================================

**JSON lines** (``.jsonl``, ``.ndjson``, ``.json``): one object a line with the same keys;
booleans and numbers as JSON values (strings work too); ``rcpt_to`` may be a list.

**Postfix maillog** (``maillog``, ``mail.log``, or any file whose first line is a syslog
line): lines of one message are joined by queue id. Timestamps are the syslog prefix:
``Mar  2 09:14:01`` (the year from ``--year``, the offset from ``--utc-offset``, default UTC;
a December-to-January step adds a year) or RFC 3339 (rsyslog's high-precision format).

- ``postfix/smtpd``: ``QID: client=name[IP]`` starts a message (client IP, and
  ``sasl_username=`` when the client authenticated).
- ``postfix/pickup``: ``QID: uid=N from=<sender>`` starts a locally submitted message.
- ``postfix/cleanup``: a ``warning:``/``info:``/``hold:`` line from ``header_checks`` gives the
  verdict: header ``X-Spam-Flag: YES`` or ``X-Spam-Status: Yes...`` is ``spam``,
  ``Precedence: bulk`` is ``bulk``, ``X-Outguard-Verdict: <verdict>`` is that verdict;
  ``Received-SPF: pass`` sets spf_pass. A ``reject:``/``discard:`` line ends the message there
  (it is counted with its verdict: the tenant did send it). Such a rule looks like
  ``/^X-Spam-Flag: YES/ WARN spam`` in ``header_checks``.
- ``postfix/qmgr``: ``QID: from=<sender>, size=N, nrcpt=K`` gives the sender and the
  recipient count; ``QID: removed`` ends the message.
- ``postfix/local`` (and smtp, lmtp, virtual): ``to=<rcpt>`` lines give recipients (for NDRs);
  ``status=sent (forwarded as QID2)`` marks QID2 as forwarded mail, with the SPF/DKIM
  results of the original and, for the tenant map, the original recipient's domain.
- ``opendkim``: ``QID: DKIM verification successful`` sets dkim_pass.
- ``amavis``: ``Passed|Blocked SPAM|SPAMMY|INFECTED|...``, ``Queue-ID: QID`` gives the verdict
  (SPAM/SPAMMY: spam, INFECTED: malware, else clean).
- A content filter on loopback (``relay=...[127.0.0.1]``, ``status=sent (... queued as QID2)``)
  re-injects the message as QID2: QID2's deliveries count as the original's, and QID2 is not
  a message of its own, so nothing is counted twice.

Only outbound mail counts: a message delivered to local mailboxes only (``local``,
``virtual``, ``lmtp``) is inbound and skipped (reported as such).

The tenant comes from ``--tenant-map`` (lines ``KEY TENANT``; KEY a SASL login or a domain;
the login is looked up first, then its domain, then for forwarded mail the original
recipient's domain); otherwise the SASL login is passed as auth_user and the client IP as
client_ip, and the engine attributes the message (accepted domain of the login, IP connectors).
Lines of other programs are ignored; lines that are not syslog lines, and Postfix lines
that do not parse, are counted as malformed with their line numbers.
"""

from __future__ import annotations

import csv
import datetime as _dt
import gzip
import io
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Optional

__all__ = [
    "COLUMNS",
    "LogData",
    "LogError",
    "Malformed",
    "TenantMap",
    "detect_format",
    "parse_time",
    "read_log",
]

#: The message columns of a log, in ``Engine.replay`` argument names (plus ``rcpt_to``).
COLUMNS = (
    "time",
    "mail_from",
    "tenant",
    "client_ip",
    "auth_user",
    "cert_domain",
    "forwarded",
    "spf_pass",
    "dkim_pass",
    "recipients",
    "verdict",
    "rcpt_to",
)
VERDICTS = ("clean", "spam", "bulk", "phish", "malware")
_TRUE = {"true", "yes", "1", "y", "t", "on"}
_FALSE = {"false", "no", "0", "n", "f", "off", ""}


class LogError(Exception):
    """The log cannot be read at all (missing file, no header, unknown format)."""


@dataclass(frozen=True)
class Malformed:
    """A log line that was skipped."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class LogData:
    """Messages of a log as columns (one entry per message), sorted by time."""

    path: str
    format: str
    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    #: The log line each message came from (its first line, for maillogs).
    lines: list[int] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)
    #: Lines read in all.
    line_count: int = 0
    #: Maillog lines of other programs, or Postfix lines that say nothing about a message.
    ignored: int = 0
    #: Maillog messages delivered to local mailboxes only (inbound mail, not replayed).
    inbound: int = 0
    #: Maillog queue ids that never got a sender (the client left before MAIL FROM).
    incomplete: int = 0

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, line: int, msg: dict[str, Any]) -> None:
        for c in COLUMNS:
            self.columns[c].append(msg.get(c))
        self.lines.append(line)

    def sort(self) -> None:
        """Sorts the messages by time (stable: equal times keep log order)."""
        times = self.columns["time"]
        if all(times[i] <= times[i + 1] for i in range(len(times) - 1)):
            return
        order = sorted(range(len(times)), key=times.__getitem__)
        for c in COLUMNS:
            col = self.columns[c]
            self.columns[c] = [col[i] for i in order]
        self.lines = [self.lines[i] for i in order]


class TenantMap:
    """``KEY TENANT`` lines (whitespace, ``,`` or ``=`` between; ``#`` comments): KEY is a
    SASL login or a domain."""

    def __init__(self, entries: Optional[dict[str, str]] = None) -> None:
        self.entries: dict[str, str] = {k.lower(): v for k, v in (entries or {}).items()}

    @classmethod
    def load(cls, path: str) -> TenantMap:
        entries: dict[str, str] = {}
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = [p for p in re.split(r"[\s,=]+", line) if p]
                if len(parts) != 2:
                    raise LogError(f"{path}:{n}: expected 'KEY TENANT', found {raw.strip()!r}")
                entries[parts[0].lower()] = parts[1]
        return cls(entries)

    def lookup(self, *keys: Optional[str]) -> Optional[str]:
        """The tenant of the first key that is mapped: a login, then its domain, and so on."""
        for key in keys:
            if not key:
                continue
            k = key.lower().strip("<>")
            if k in self.entries:
                return self.entries[k]
            if "@" in k:
                dom = k.rsplit("@", 1)[1]
                if dom in self.entries:
                    return self.entries[dom]
        return None

    def __len__(self) -> int:
        return len(self.entries)


# ----------------------------------------------------------------------------------------------
# Field conversions (a ValueError's message becomes the malformed line's reason)


#: The latest time a log may carry: 3000-01-01T00:00:00Z (far beyond any mail log, and with
#: room for blocks that end later still to be shown as dates).
MAX_TIME = 32_503_680_000


def _in_range(t: Any, shown: Any) -> int:
    if not 0 <= t <= MAX_TIME:  # also refuses NaN and infinities
        raise ValueError(f"time {shown!r} is out of range (Unix seconds from 0 to {MAX_TIME})")
    return int(t)


def parse_time(value: Any) -> int:
    """Unix seconds from a number, a digit string, or RFC 3339 text with an offset."""
    if isinstance(value, bool):
        raise ValueError(f"bad time {value!r}")
    if isinstance(value, (int, float)):
        return _in_range(value, value)
    s = str(value).strip()
    if not s:
        raise ValueError("empty time")
    if re.fullmatch(r"\d+(\.\d*)?", s):
        return _in_range(float(s) if "." in s else int(s), s)
    text = s
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # Python 3.9's fromisoformat wants 3 or 6 fraction digits: normalise to 6.
    m = re.match(r"^(.{19})\.(\d+)(.*)$", text)
    if m:
        text = f"{m.group(1)}.{(m.group(2) + '000000')[:6]}{m.group(3)}"
    try:
        t = _dt.datetime.fromisoformat(text.replace("t", "T", 1) if len(text) > 10 else text)
    except ValueError:
        raise ValueError(f"bad time {s!r} (expected Unix seconds or RFC 3339)") from None
    if t.tzinfo is None:
        if len(s) == 10:  # a bare date: midnight UTC
            t = t.replace(tzinfo=_dt.timezone.utc)
        else:
            raise ValueError(f"time {s!r} has no UTC offset (add Z or +HH:MM)")
    ts = t.timestamp()
    if ts < 0:
        raise ValueError(f"time {s!r} is before 1970")
    return _in_range(ts, s)


def _flag(value: Any, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{name}: expected true or false, found {value!r}")


def _unicode(s: str, name: str) -> str:
    """`s` if it has a UTF-8 form (JSON can carry lone surrogates, which have none)."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name}: not valid Unicode ({e.reason} at {e.start})") from None
    return s


def _text(value: Any, name: str) -> Optional[str]:
    if value is None:
        return None
    s = _unicode(str(value).strip(), name)
    return s or None


def _ip(value: Any) -> Optional[str]:
    s = _text(value, "client_ip")
    if s is None:
        return None
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if s.lower().startswith("ipv6:"):
        s = s[5:]
    try:
        if "%" in s:
            raise ValueError
        ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"client_ip: bad IP address {s!r}") from None
    return s


def _recipients(value: Any) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1
    if isinstance(value, bool):
        raise ValueError(f"recipients: expected a count, found {value!r}")
    try:
        n = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ValueError(f"recipients: expected a count, found {value!r}") from None
    if not 0 <= n <= 0xFFFFFFFF:
        raise ValueError(f"recipients: {n} is out of range")
    return n


def _verdict(value: Any) -> str:
    s = (_text(value, "verdict") or "clean").lower()
    if s not in VERDICTS:
        raise ValueError(f"verdict: unknown verdict {value!r} (expected {', '.join(VERDICTS)})")
    return s


def _rcpts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [_unicode(str(v).strip("<> "), "rcpt_to") for v in value if str(v).strip("<> ")]
    return [_unicode(p.strip("<>"), "rcpt_to") for p in re.split(r"[\s,;]+", str(value)) if p.strip("<>")]


def normalise(row: dict[str, Any], tenant_map: Optional[TenantMap] = None) -> dict[str, Any]:
    """A message dict with checked, converted fields. Raises ``ValueError`` with the reason."""
    if "time" not in row or row["time"] is None:
        raise ValueError("no time")
    if "mail_from" not in row:
        raise ValueError("no mail_from")
    mail_from = row.get("mail_from")
    msg: dict[str, Any] = {
        "time": parse_time(row["time"]),
        "mail_from": "" if mail_from is None else _unicode(str(mail_from).strip(), "mail_from"),
        "tenant": _text(row.get("tenant"), "tenant"),
        "client_ip": _ip(row.get("client_ip")),
        "auth_user": _text(row.get("auth_user"), "auth_user"),
        "cert_domain": _text(row.get("cert_domain"), "cert_domain"),
        "forwarded": _flag(row.get("forwarded"), "forwarded"),
        "spf_pass": _flag(row.get("spf_pass"), "spf_pass"),
        "dkim_pass": _flag(row.get("dkim_pass"), "dkim_pass"),
        "recipients": _recipients(row.get("recipients")),
        "verdict": _verdict(row.get("verdict")),
        "rcpt_to": _rcpts(row.get("rcpt_to")),
    }
    if msg["tenant"] is None and tenant_map is not None:
        msg["tenant"] = tenant_map.lookup(msg["auth_user"])
    return msg


# ----------------------------------------------------------------------------------------------
# Opening and format detection

_SYSLOG_BSD = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<hms>\d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)$"
)
_SYSLOG_ISO = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (?P<host>\S+) "
    r"(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)$"
)


def _open(path: str) -> IO[str]:
    if path == "-":
        import sys

        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    try:
        if path.endswith(".gz"):
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
        return open(path, encoding="utf-8", errors="replace", newline="")
    except OSError as e:
        raise LogError(f"cannot read {path}: {e.strerror or e}") from None


def detect_format(path: str, first_line: str) -> str:
    """``"csv"``, ``"jsonl"`` or ``"maillog"`` from the file name, else from the first line."""
    name = os.path.basename(path[:-3] if path.endswith(".gz") else path).lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.startswith(("maillog", "mail.log", "mail.info", "mail.err", "syslog")):
        return "maillog"
    line = first_line.lstrip("\ufeff").strip()
    if line.startswith("{"):
        return "jsonl"
    if _SYSLOG_BSD.match(line) or _SYSLOG_ISO.match(line):
        return "maillog"
    if "time" in line and "mail_from" in line:
        return "csv"
    raise LogError(
        f"cannot tell the format of {path}: use --format csv, jsonl or maillog "
        f"(first line: {first_line.strip()[:80]!r})"
    )


Progress = Callable[[int], None]


def _lines(f: IO[str], progress: Optional[Progress]) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(f, 1):
        if progress is not None:
            progress(len(line) + 1)
        yield n, line


def read_log(
    path: str,
    fmt: str = "auto",
    tenant_map: Optional[TenantMap] = None,
    year: Optional[int] = None,
    utc_offset: int = 0,
    progress: Optional[Progress] = None,
) -> LogData:
    """Reads a log (``fmt``: ``"auto"``, ``"csv"``, ``"jsonl"``, ``"maillog"``) into sorted
    columns. ``progress`` is called with the bytes read so far, bit by bit."""
    f = _open(path)
    with f:
        if fmt == "auto":
            first = ""
            if path != "-" and not path.endswith(".gz"):
                pos = f.tell()
                first = f.readline()
                f.seek(pos)
            else:
                # Not seekable: read it all.
                text = f.read()
                first = text.split("\n", 1)[0]
                f = io.StringIO(text)
            fmt = detect_format(path, first)
        data = LogData(path=path, format=fmt)
        if fmt == "csv":
            _read_csv(f, data, tenant_map, progress)
        elif fmt == "jsonl":
            _read_jsonl(f, data, tenant_map, progress)
        elif fmt == "maillog":
            if year is None:
                year = _dt.datetime.now(_dt.timezone.utc).year
            MaillogReader(data, tenant_map or TenantMap(), year, utc_offset).read(_lines(f, progress))
        else:
            raise LogError(f"unknown format {fmt!r}: expected csv, jsonl or maillog")
    data.sort()
    return data


def _read_csv(f: IO[str], data: LogData, tm: Optional[TenantMap], progress: Optional[Progress]) -> None:
    reader = csv.reader(_stripped(f, progress))
    header: Optional[list[str]] = None
    n = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            data.malformed.append(Malformed(reader.line_num, f"CSV: {e}"))
            continue
        n = reader.line_num
        if header is None:
            if not row or all(not c.strip() for c in row):
                continue
            header = [c.strip().lstrip("\ufeff").lower() for c in row]
            missing = [c for c in ("time", "mail_from") if c not in header]
            if missing:
                raise LogError(
                    f"{data.path}: the CSV header lacks {' and '.join(missing)} "
                    f"(found {', '.join(header)}); see `outguard replay --help` for the columns"
                )
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            data.malformed.append(Malformed(n, f"{len(row)} fields, the header has {len(header)}"))
            continue
        try:
            data.add(n, normalise(dict(zip(header, row)), tm))
        except ValueError as e:
            data.malformed.append(Malformed(n, str(e)))
    data.line_count = n
    if header is None:
        raise LogError(f"{data.path}: empty CSV (no header line)")


def _stripped(f: IO[str], progress: Optional[Progress]) -> Iterator[str]:
    for _, line in _lines(f, progress):
        yield line


def _read_jsonl(f: IO[str], data: LogData, tm: Optional[TenantMap], progress: Optional[Progress]) -> None:
    n = 0
    for n, line in _lines(f, progress):
        s = line.strip()
        if not s:
            continue
        try:
            obj = json.loads(s)
        except ValueError as e:
            data.malformed.append(Malformed(n, f"JSON: {e}"))
            continue
        if not isinstance(obj, dict):
            data.malformed.append(Malformed(n, f"expected a JSON object, found {type(obj).__name__}"))
            continue
        try:
            data.add(n, normalise(obj, tm))
        except ValueError as e:
            data.malformed.append(Malformed(n, str(e)))
    data.line_count = n


# ----------------------------------------------------------------------------------------------
# Postfix maillog

_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_QID = re.compile(r"^(?P<qid>[0-9A-Za-z]{5,20}): (?P<rest>.*)$")
_CLIENT = re.compile(r"^client=(?P<name>[^\[,\s]*)\[(?P<ip>[^\]]*)\]")
_KV = re.compile(r"(?:^|,\s*|\s)(?P<k>[a-z_]+)=(?P<v><[^>]*>|[^,\s]*)")
_HEADER = re.compile(r"^(?P<act>warning|info|hold|reject|discard|redirect|filter|prepend|replace): header (?P<hdr>[^:]+):\s*(?P<val>.*?)(?: from \S+\[[^\]]*\];|;|$)")
_AMAVIS = re.compile(r"\b(?:Passed|Blocked) (?P<cat>[A-Z][A-Z-]*)\b.*?\bQueue-ID: (?P<qid>[0-9A-Za-z]+)")
_FORWARDED = re.compile(r"forwarded as (?P<qid>[0-9A-Za-z]+)")
_AMAVIS_VERDICT = {"SPAM": "spam", "SPAMMY": "spam", "INFECTED": "malware"}


@dataclass
class _Pending:
    line: int
    time: int
    client_ip: Optional[str] = None
    sasl: Optional[str] = None
    mail_from: Optional[str] = None
    recipients: int = 1
    verdict: str = "clean"
    forwarded: bool = False
    spf_pass: bool = False
    dkim_pass: bool = False
    orig_rcpt: Optional[str] = None
    rcpt_to: list[str] = field(default_factory=list)
    rejected: bool = False
    #: Delivered to a local mailbox / relayed onwards.
    local: bool = False
    remote: bool = False
    #: Waiting for its re-injected copy (content filter) to be delivered.
    waiting: bool = False
    removed: bool = False


_LOCAL_DELIVERY = ("local", "virtual", "lmtp")
_REMOTE_DELIVERY = ("smtp", "relay")
_LOOPBACK = re.compile(r"relay=(?:localhost|[^,\s]*\[(?:127\.[0-9.]+|::1)\])")
_QUEUED_AS_POSTFIX = re.compile(r"status=sent \(.*\bqueued as (?P<qid>[0-9A-Za-z]{5,20})\)")


class MaillogReader:
    """Joins Postfix log lines by queue id into messages (see the module documentation)."""

    def __init__(self, data: LogData, tenant_map: TenantMap, year: int, utc_offset: int = 0) -> None:
        self.data = data
        self.tm = tenant_map
        self.year = year
        self.offset = utc_offset
        self.last_month = 0
        self.pending: dict[str, _Pending] = {}
        #: Re-injected copy (content filter) -> the original queue id.
        self.alias: dict[str, str] = {}
        #: QID2 -> the message it forwards (local's "forwarded as QID2" before QID2 appears).
        self.forwarded: dict[str, _Pending] = {}
        #: Messages that never got a sender (client left before MAIL FROM, ...).
        self.incomplete = 0
        #: Messages delivered only to local mailboxes (inbound mail): not outbound, skipped.
        self.inbound = 0

    def time(self, m: re.Match[str]) -> int:
        if m.re is _SYSLOG_ISO:
            return parse_time(m.group("ts").replace(" ", "T", 1))
        mon = _MONTHS.get(m.group("mon"))
        if mon is None:
            raise ValueError(f"bad month {m.group('mon')!r}")
        if self.last_month == 12 and mon == 1:
            self.year += 1
        self.last_month = mon
        h, mi, s = (int(x) for x in m.group("hms").split(":"))
        try:
            t = _dt.datetime(self.year, mon, int(m.group("day")), h, mi, s, tzinfo=_dt.timezone.utc)
        except ValueError as e:
            raise ValueError(f"bad syslog date: {e}") from None
        return int(t.timestamp()) - self.offset

    def read(self, lines: Iterator[tuple[int, str]]) -> None:
        n = 0
        for n, raw in lines:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            m = _SYSLOG_BSD.match(line) or _SYSLOG_ISO.match(line)
            if m is None:
                self.data.malformed.append(Malformed(n, f"not a syslog line: {line[:60]!r}"))
                continue
            try:
                self.line(n, self.time(m), m.group("prog"), m.group("msg"))
            except ValueError as e:
                self.data.malformed.append(Malformed(n, str(e)))
        self.data.line_count = n
        for qid in list(self.pending):
            self.finish(qid)
        self.data.inbound = self.inbound
        self.data.incomplete = self.incomplete

    def line(self, n: int, t: int, prog: str, msg: str) -> None:
        daemon = prog.rsplit("/", 1)[-1]
        if daemon.startswith("amavis"):
            self.amavis(msg)
            return
        if daemon == "opendkim":
            q = _QID.match(msg)
            if q and "DKIM verification successful" in q.group("rest"):
                p = self.pending.get(q.group("qid"))
                if p:
                    p.dkim_pass = True
            return
        if "/" not in prog or not prog.split("/", 1)[0].startswith("postfix"):
            self.data.ignored += 1
            return
        q = _QID.match(msg)
        if q is None or q.group("qid") == "NOQUEUE":
            self.data.ignored += 1
            return
        qid, rest = q.group("qid"), q.group("rest")
        if qid in self.alias:
            self.copy_line(qid, daemon, rest)
            return
        if daemon == "smtpd":
            c = _CLIENT.match(rest)
            if c is None:
                self.data.ignored += 1
                return
            kv = self.kv(rest)
            ip = kv.get("orig_client", c.group("ip"))
            if "[" in ip and "]" in ip:
                ip = ip[ip.index("[") + 1 : ip.rindex("]")]
            p = self.start(qid, n, t)
            p.client_ip = _ip(ip) if ip and ip.lower() != "unknown" else None
            p.sasl = kv.get("sasl_username") or p.sasl
        elif daemon == "pickup":
            kv = self.kv(rest)
            p = self.start(qid, n, t)
            if "from" in kv:
                p.mail_from = kv["from"].strip("<>")
        elif daemon == "cleanup":
            p = self.pending.get(qid) or self.start(qid, n, t)
            h = _HEADER.match(rest)
            if h is not None:
                self.header(p, h)
            act = rest.split(":", 1)[0]
            if act in ("reject", "discard"):
                kv = self.kv(rest)
                p.mail_from = kv.get("from", "<>").strip("<>")
                p.rejected = True
                self.finish(qid)
        elif daemon == "qmgr":
            p = self.pending.get(qid)
            if rest == "removed":
                if p is not None:
                    p.removed = True
                    if not p.waiting:
                        self.finish(qid)
                return
            if rest.startswith("from="):
                if p is None:
                    p = self.start(qid, n, t)
                kv = self.kv(rest)
                if "nrcpt" in kv:
                    try:
                        p.recipients = int(kv["nrcpt"])
                    except ValueError:
                        raise ValueError(f"qmgr: bad nrcpt {kv['nrcpt']!r}") from None
                p.mail_from = kv.get("from", "<>").strip("<>")
            else:
                self.data.ignored += 1
        elif daemon in _LOCAL_DELIVERY or daemon in _REMOTE_DELIVERY:
            p = self.pending.get(qid)
            if p is None:
                self.data.ignored += 1
                return
            qa = _QUEUED_AS_POSTFIX.search(rest)
            if qa and _LOOPBACK.search(rest):
                # Handed to a content filter that re-injects the message as a new queue file:
                # the copy's deliveries are this message's.
                self.alias[qa.group("qid")] = qid
                self.pending.pop(qa.group("qid"), None)
                p.waiting = True
                return
            self.delivery(p, daemon, rest)
            fw = _FORWARDED.search(rest)
            if fw:
                q2 = fw.group("qid")
                kv = self.kv(rest)
                orig = kv.get("orig_to", kv.get("to", "")).strip("<>")
                child = self.pending.get(q2)
                if child is not None:
                    self.mark_forwarded(child, p, orig)
                else:
                    self.forwarded[q2] = _Pending(0, 0, spf_pass=p.spf_pass, dkim_pass=p.dkim_pass, orig_rcpt=orig)
        else:
            self.data.ignored += 1

    def delivery(self, p: _Pending, daemon: str, rest: str) -> None:
        kv = self.kv(rest)
        if "to" in kv:
            p.rcpt_to.append(kv["to"].strip("<>"))
        if daemon in _LOCAL_DELIVERY:
            p.local = True
        else:
            p.remote = True

    def copy_line(self, qid: str, daemon: str, rest: str) -> None:
        """A line of a content filter's re-injected copy: its deliveries are the original's."""
        orig = self.alias[qid]
        p = self.pending.get(orig)
        if daemon in _LOCAL_DELIVERY or daemon in _REMOTE_DELIVERY:
            if p is not None:
                self.delivery(p, daemon, rest)
        elif daemon == "qmgr" and rest == "removed":
            del self.alias[qid]
            if p is not None:
                p.waiting = False
                if p.removed:
                    self.finish(orig)

    @staticmethod
    def kv(rest: str) -> dict[str, str]:
        return {m.group("k"): m.group("v") for m in _KV.finditer(rest)}

    def start(self, qid: str, n: int, t: int) -> _Pending:
        p = self.pending.get(qid)
        if p is None:
            p = _Pending(line=n, time=t)
            self.pending[qid] = p
            origin = self.forwarded.pop(qid, None)
            if origin is not None:
                self.mark_forwarded(p, origin, origin.orig_rcpt or "")
        return p

    @staticmethod
    def mark_forwarded(p: _Pending, origin: _Pending, orig_rcpt: str) -> None:
        p.forwarded = True
        p.spf_pass = p.spf_pass or origin.spf_pass
        p.dkim_pass = p.dkim_pass or origin.dkim_pass
        p.orig_rcpt = orig_rcpt or None

    @staticmethod
    def header(p: _Pending, h: re.Match[str]) -> None:
        name, value = h.group("hdr").strip().lower(), h.group("val").strip().lower()
        if name == "x-spam-flag" and value.startswith("yes"):
            p.verdict = "spam"
        elif name == "x-spam-status" and value.startswith("yes"):
            p.verdict = "spam"
        elif name == "precedence" and value.startswith("bulk") and p.verdict == "clean":
            p.verdict = "bulk"
        elif name == "x-outguard-verdict":
            v = value.split()[0] if value.split() else ""
            if v not in VERDICTS:
                raise ValueError(f"cleanup: unknown X-Outguard-Verdict {value!r}")
            p.verdict = v
        elif name == "received-spf" and value.startswith("pass"):
            p.spf_pass = True

    def amavis(self, msg: str) -> None:
        a = _AMAVIS.search(msg)
        if a is None:
            return
        p = self.pending.get(a.group("qid"))
        if p is not None:
            v = _AMAVIS_VERDICT.get(a.group("cat"))
            if v is not None:
                p.verdict = v

    def finish(self, qid: str) -> None:
        p = self.pending.pop(qid, None)
        if p is None:
            return
        if p.mail_from is None:
            self.incomplete += 1
            return
        if p.local and not p.remote and not p.rejected:
            self.inbound += 1
            return
        tenant = self.tm.lookup(p.sasl) if p.sasl else None
        if tenant is None and p.forwarded and p.orig_rcpt:
            tenant = self.tm.lookup(p.orig_rcpt)
        self.data.add(
            p.line,
            {
                "time": p.time,
                "mail_from": p.mail_from,
                "tenant": tenant,
                "client_ip": p.client_ip,
                "auth_user": p.sasl,
                "cert_domain": None,
                "forwarded": p.forwarded,
                "spf_pass": p.spf_pass,
                "dkim_pass": p.dkim_pass,
                "recipients": p.recipients,
                "verdict": p.verdict,
                "rcpt_to": p.rcpt_to,
            },
        )
