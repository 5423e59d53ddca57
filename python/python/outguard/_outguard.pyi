"""Type stubs of the extension module (checked against it by ``python -m mypy.stubtest outguard``)."""

import array
import datetime
import ipaddress
import os
from typing import Any, ClassVar, Literal, Optional, Sequence, Union, final

__all__ = [
    "OutguardError",
    "PolicyError",
    "SnapshotError",
    "UnknownTenantError",
    "NotFoundError",
    "CapacityError",
    "Policy",
    "Engine",
    "SharedEngine",
    "Decision",
    "Event",
    "Counters",
    "TenantStatus",
    "RuleStatus",
    "Restriction",
    "SuspiciousConnector",
    "Diagnostic",
    "ReloadReport",
    "RestoreReport",
    "Replay",
    "explain",
    "title",
    "reply",
    "render_ndr",
    "__version__",
]

__version__: str

_Time = Union[int, float, datetime.datetime]
"""Unix seconds (``int``; a ``float`` is truncated) or a timezone-aware ``datetime``."""
_IpLike = Union[str, ipaddress.IPv4Address, ipaddress.IPv6Address]
_RangeLike = Union[str, ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Address, ipaddress.IPv6Address]
_BlockEnd = Union[int, Literal["release"], None]
"""When a block ends: Unix seconds, ``"release"`` (needs an operator's release), or ``None``."""
_Verdict = Literal["clean", "spam", "bulk", "phish", "malware"]
_SenderClass = Literal["registered", "exempt", "unregistered", "null"]
_RuleName = Literal["tenant_threshold", "unregistered_domain", "low_reputation_ip"]
_Column = Any
"""A sequence with one value per message (list, tuple, numpy array, pandas Series, pyarrow
array: read via ``to_pylist()``/``tolist()``/iteration), or one value for every message."""

class OutguardError(Exception):
    """Base class of every outguard error."""

class PolicyError(OutguardError):
    """A policy that does not parse or build. ``diagnostics`` lists every problem; ``file``,
    ``line``, ``column`` and ``field`` (the ``path`` of a diagnostic) name the first."""

    diagnostics: list[Diagnostic]
    file: str
    line: int
    column: int
    field: str

class SnapshotError(OutguardError):
    """A truncated, corrupt, foreign or other-version snapshot. The engine is left as it was."""

class UnknownTenantError(OutguardError, LookupError):
    """No tenant with that id."""

class NotFoundError(OutguardError, LookupError):
    """No such domain, connector, range or exception."""

class CapacityError(OutguardError):
    """A table of the engine is full (capacity is fixed when the engine is built)."""

@final
class Diagnostic:
    """One problem found in a policy. ``str(d)`` is ``file:line:column: path: expected X, found Y: message``."""

    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int:
        """1-based; 0 when the problem concerns the whole file."""
    @property
    def column(self) -> int: ...
    @property
    def path(self) -> str:
        """The field, such as ``tenants[3].domains[1].name``; empty for syntax errors."""
    @property
    def expected(self) -> str: ...
    @property
    def found(self) -> str: ...
    @property
    def message(self) -> str: ...
    def astuple(self) -> tuple[str, int, int, str, str, str, str]:
        """``(file, line, column, path, expected, found, message)``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Policy:
    """A validated policy (SPEC §2). Immutable; share it between threads and engines."""

    @staticmethod
    def load(path: Union[str, os.PathLike[str]]) -> Policy:
        """Reads and parses a policy file (files it refers to are read relative to it).
        Raises ``PolicyError`` listing every problem."""
    @staticmethod
    def from_toml(
        text: str, file: str = "<string>", base_dir: Optional[Union[str, os.PathLike[str]]] = None
    ) -> Policy:
        """Parses policy text; ``file`` names it in diagnostics; relative ``files`` and
        ``tenants_file`` entries are read from ``base_dir``."""
    @property
    def file(self) -> str: ...
    @property
    def tenants(self) -> list[str]:
        """Tenant ids, in policy order."""
    def rules(self) -> dict[str, dict[str, Any]]:
        """The default rule parameters per rule (durations in seconds, ratios 0..1)."""

@final
class Counters:
    """A tenant's windowed counters against their limits, at the time of a decision."""

    @property
    def total(self) -> int: ...
    @property
    def suspicious(self) -> int: ...
    @property
    def unregistered(self) -> int: ...
    @property
    def min_messages(self) -> int: ...
    @property
    def min_suspicious(self) -> int: ...
    @property
    def max_ratio(self) -> float: ...
    @property
    def warn_ratio(self) -> float: ...
    @property
    def limit(self) -> int: ...
    def to_dict(self) -> dict[str, Union[int, float]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Event:
    """A state change of a tenant's rules, with the windowed counters at that moment."""

    @property
    def kind(self) -> Literal["warned", "blocked", "released", "expired", "lapsed", "reactivated"]: ...
    @property
    def rule(self) -> _RuleName: ...
    @property
    def code(self) -> str:
        """The rule's enhanced code (``"5.7.705"``)."""
    @property
    def tenant(self) -> str: ...
    @property
    def time(self) -> int: ...
    @property
    def until(self) -> _BlockEnd:
        """``blocked``: when the block ends (or ``"release"``); ``reactivated``: when mail resumes."""
    @property
    def total(self) -> int: ...
    @property
    def suspicious(self) -> int: ...
    @property
    def unregistered(self) -> int: ...
    @property
    def monitor(self) -> bool:
        """The rule is in monitor mode: nothing was really refused."""
    def to_dict(self) -> dict[str, Any]: ...

@final
class Decision:
    """The answer for one message. ``bool(d)`` is ``d.accepted``."""

    @property
    def accepted(self) -> bool: ...
    @property
    def code(self) -> Optional[str]:
        """Enhanced code of a refusal (``"5.7.750"``); ``None`` when accepted."""
    @property
    def reply(self) -> Optional[str]:
        """The exact SMTP reply line; ``None`` when accepted."""
    @property
    def smtp_code(self) -> Optional[int]: ...
    @property
    def reason(self) -> Optional[str]:
        """``"tenant_threshold"``, ``"tenant_lapsed"``, ``"low_reputation_ip"``,
        ``"unregistered_domain"``, ``"unattributed"`` or ``"invalid_sender"``."""
    @property
    def rule(self) -> Optional[_RuleName]:
        """The rule that refused the message (or would have, in monitor mode)."""
    @property
    def tenant(self) -> Optional[str]:
        """The tenant id the message was attributed to."""
    @property
    def attribution(self) -> Optional[Literal["explicit", "auth_user", "certificate", "ip_connector"]]: ...
    @property
    def sender_class(self) -> Optional[_SenderClass]:
        """``None`` only when the sender cannot be parsed (5.1.7)."""
    @property
    def monitored(self) -> Optional[str]:
        """Monitor mode: the code the message would have been refused with (it was accepted)."""
    @property
    def monitored_reply(self) -> Optional[str]: ...
    @property
    def counters(self) -> Counters: ...
    @property
    def block_ends(self) -> _BlockEnd: ...
    @property
    def events(self) -> list[Event]:
        """The events recording the message caused (``evaluate``); empty for ``check``."""
    def to_dict(self) -> dict[str, Any]: ...
    def __bool__(self) -> bool: ...

@final
class RuleStatus:
    @property
    def rule(self) -> _RuleName: ...
    @property
    def code(self) -> str: ...
    @property
    def blocked(self) -> bool: ...
    @property
    def blocked_at(self) -> Optional[int]: ...
    @property
    def block_ends(self) -> _BlockEnd: ...
    @property
    def grace_until(self) -> Optional[int]: ...
    @property
    def warned(self) -> bool: ...
    @property
    def mode(self) -> Literal["enforce", "monitor"]: ...

@final
class TenantStatus:
    @property
    def tenant(self) -> str: ...
    @property
    def licensed(self) -> bool: ...
    @property
    def lapsed(self) -> bool: ...
    @property
    def blocked(self) -> bool:
        """Lapsed, or either windowed rule blocked."""
    @property
    def threshold(self) -> RuleStatus:
        """5.7.705."""
    @property
    def unregistered(self) -> RuleStatus:
        """5.7.750."""
    @property
    def counters(self) -> Counters: ...

@final
class Restriction:
    @property
    def tenant(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def reply(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def rule(self) -> Optional[_RuleName]: ...
    @property
    def since(self) -> int: ...
    @property
    def ends(self) -> _BlockEnd: ...
    @property
    def monitor(self) -> bool: ...

@final
class SuspiciousConnector:
    @property
    def tenant(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def certificate(self) -> Optional[str]: ...
    @property
    def created(self) -> int: ...
    @property
    def why(self) -> list[Literal["recent", "certificate_not_accepted", "low_reputation_range"]]: ...

@final
class ReloadReport:
    @property
    def removed(self) -> list[str]: ...
    @property
    def added(self) -> list[str]: ...

@final
class RestoreReport:
    @property
    def restored(self) -> int: ...
    @property
    def unknown(self) -> int: ...

@final
class Replay:
    """Columns of decisions, one entry per message in input order. Each column property builds
    a new list; ``to_dict()`` gives them all (``pandas.DataFrame(r.to_dict())``)."""

    columns: ClassVar[list[str]]
    @property
    def accepted(self) -> list[bool]: ...
    @property
    def code(self) -> list[Optional[str]]: ...
    @property
    def reason(self) -> list[Optional[str]]: ...
    @property
    def rule(self) -> list[Optional[_RuleName]]: ...
    @property
    def tenant(self) -> list[Optional[str]]: ...
    @property
    def attribution(self) -> list[Optional[str]]: ...
    @property
    def sender_class(self) -> list[Optional[_SenderClass]]: ...
    @property
    def monitored(self) -> list[Optional[str]]: ...
    @property
    def block_ends(self) -> list[_BlockEnd]: ...
    @property
    def total(self) -> list[int]: ...
    @property
    def suspicious(self) -> list[int]: ...
    @property
    def unregistered(self) -> list[int]: ...
    @property
    def limit(self) -> list[int]: ...
    @property
    def events(self) -> list[Event]:
        """The events recording caused, in the order they happened."""
    @property
    def event_message(self) -> list[int]:
        """For each event, the index of the message whose recording caused it."""
    def to_dict(self) -> dict[str, list[Any]]: ...
    def array(self, name: str) -> array.array[int]:
        """One column as an ``array.array``, with no Python object per message: ``accepted``
        ``"B"`` (0/1); ``total``, ``suspicious``, ``unregistered``, ``limit`` ``"I"``;
        ``block_ends`` ``"Q"`` (0: none, ``2**64 - 1``: until release); text columns as codes
        (``"B"``; ``"I"`` for ``tenant``) into ``categories(name)``, 0 for ``None``."""
    def categories(self, name: str) -> list[Optional[str]]:
        """The values of a text column's codes (``None`` first). Fixed for every column but
        ``tenant``, whose categories are this batch's tenants."""
    def to_numpy(self) -> dict[str, Any]:
        """Every column as a numpy array (needs numpy): ``accepted`` bool, counters uint32,
        ``block_ends`` uint64 (as in ``array``), text columns object arrays sharing the
        category strings."""
    def decision(self, i: int) -> Decision:
        """The decision for message ``i``, with the events it caused."""
    def __getitem__(self, key: str, /) -> list[Any]: ...
    def __len__(self) -> int: ...

@final
class SharedEngine:
    """An engine over a compiled policy image and a state file that many processes map at
    once (forking mail servers, restarts): counts are shared and survive process crashes.

    ``check`` takes no lock; ``record``, ``evaluate`` and operator actions serialise on the
    state file. Policy edits go through ``compile`` + ``migrate``."""

    def __new__(
        cls,
        image: Optional[Union[str, os.PathLike[str]]],
        state: Union[str, os.PathLike[str]],
    ) -> SharedEngine: ...
    @staticmethod
    def compile(policy: Policy, image: Union[str, os.PathLike[str]]) -> int:
        """Writes the policy as a flat image file; returns the image id."""
    @staticmethod
    def create_state(image: Union[str, os.PathLike[str]], state: Union[str, os.PathLike[str]]) -> None:
        """Creates a fresh state file for an image (never overwrites an existing file)."""
    @staticmethod
    def migrate(
        old_image: Union[str, os.PathLike[str]],
        old_state: Union[str, os.PathLike[str]],
        new_image: Union[str, os.PathLike[str]],
        new_state: Union[str, os.PathLike[str]],
    ) -> ReloadReport:
        """Carries counters, blocks and audit trails over to a state file for a new image."""
    @staticmethod
    def repair(
        image: Optional[Union[str, os.PathLike[str]]], state: Union[str, os.PathLike[str]]
    ) -> dict[str, int]:
        """Repairs a state file no process has open (stale locks, unfinished writes); raises
        ``BlockingIOError`` while one has it open. Returns ``locks_reset``, ``rolled_back`` and
        ``published`` counts."""
    def check(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> Decision: ...
    def record(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        verdict: _Verdict,
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> list[Event]: ...
    def evaluate(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        verdict: _Verdict = "clean",
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> Decision: ...
    def release(self, tenant: str, now: _Time, rule: Optional[str] = None) -> list[Event]: ...
    def mark_lapsed(self, tenant: str, now: _Time) -> list[Event]: ...
    def mark_active(self, tenant: str, now: _Time) -> list[Event]: ...
    def status(self, tenant: str, now: _Time) -> TenantStatus: ...
    def sync(self) -> None: ...
    @property
    def state_path(self) -> os.PathLike[str]: ...
    @property
    def image_path(self) -> os.PathLike[str]: ...

@final
class Engine:
    """The engine: decides every message, counts accepted ones, keeps blocks and audit trails.

    Thread-safe: ``check`` and queries take a read lock (threads decide in parallel); ``record``,
    ``evaluate``, operator actions and ``reload`` take the write lock. Batch calls release the
    GIL for their whole loop."""

    def __new__(cls, policy: Policy) -> Engine: ...
    @staticmethod
    def restore(policy: Policy, data: bytes) -> Engine:
        """Builds an engine for ``policy`` with the state of a ``snapshot()``.
        Raises ``SnapshotError`` for a truncated, corrupt, foreign or other-version snapshot."""
    def check(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> Decision:
        """Decides one message; counts nothing."""
    def record(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        verdict: _Verdict,
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> list[Event]:
        """Counts an accepted, scanned message with the content filter's verdict; may trip
        blocks. Returns the events. ``ValueError`` for an unparsable sender,
        ``UnknownTenantError`` for a message of no tenant."""
    def evaluate(
        self,
        now: _Time,
        mail_from: Union[str, bytes, None],
        *,
        verdict: _Verdict = "clean",
        tenant: Optional[str] = None,
        client_ip: Optional[_IpLike] = None,
        auth_user: Optional[str] = None,
        cert_domain: Optional[str] = None,
        forwarded: bool = False,
        spf_pass: bool = False,
        dkim_pass: bool = False,
        recipients: int = 1,
    ) -> Decision:
        """``check``, then ``record`` if accepted; the events are in ``decision.events``."""
    def replay(
        self,
        now: _Column,
        mail_from: _Column = None,
        verdict: _Column = None,
        tenant: _Column = None,
        client_ip: _Column = None,
        auth_user: _Column = None,
        cert_domain: _Column = None,
        forwarded: _Column = None,
        spf_pass: _Column = None,
        dkim_pass: _Column = None,
        recipients: _Column = None,
    ) -> Replay:
        """``evaluate`` for a batch of messages given as columns, in time order (stable), with
        the GIL released for the whole loop. Missing values: verdict ``"clean"``, flags false,
        recipients 1, text fields absent. The columns may also come as one table in place of
        ``now`` (``mail_from`` not given): a pandas DataFrame, a pyarrow Table or
        RecordBatch, or a dict of columns, read by name (``now`` or ``time``, ``mail_from``,
        ``verdict``, ``tenant``...; other columns are ignored)."""
    def check_batch(
        self,
        now: _Column,
        mail_from: _Column = None,
        tenant: _Column = None,
        client_ip: _Column = None,
        auth_user: _Column = None,
        cert_domain: _Column = None,
        forwarded: _Column = None,
        spf_pass: _Column = None,
        dkim_pass: _Column = None,
        recipients: _Column = None,
    ) -> Replay:
        """``check`` for a batch of messages given as columns; counts nothing. Fastest with
        Arrow columns (pyarrow, pandas ``str``/Arrow dtypes: read in place through the Arrow
        C Data Interface) and numpy arrays (numbers, bools, ``S``/``U`` strings). Takes one
        table in place of the columns, as ``replay``."""
    def release(self, tenant: str, now: _Time, rule: Optional[str] = None) -> list[Event]:
        """Releases the tenant's block of ``rule`` (name or code; both with ``None``)."""
    def status(self, tenant: str, now: _Time) -> TenantStatus: ...
    def mark_lapsed(self, tenant: str, now: _Time) -> list[Event]: ...
    def mark_active(self, tenant: str, now: _Time) -> list[Event]: ...
    def expire(self, now: _Time) -> list[Event]:
        """Expires every timed block that ran out by ``now``."""
    def grant_exception(self, tenant: str, range: _RangeLike, expires: Optional[_Time] = None) -> None:
        """An exception to 5.7.708 for ``range`` until ``expires`` (``None``: never)."""
    def revoke_exception(self, tenant: str, range: _RangeLike) -> None: ...
    def exceptions(self, tenant: str) -> list[tuple[str, Optional[int]]]: ...
    def add_domain(self, tenant: str, name: str, subdomains: bool = False, validated: bool = True) -> None: ...
    def validate_domain(self, tenant: str, name: str) -> None: ...
    def remove_domain(self, tenant: str, name: str) -> None: ...
    def domains(self, tenant: str) -> list[tuple[str, bool, bool]]:
        """``(name, subdomains, validated)``."""
    def add_connector(
        self,
        tenant: str,
        name: str,
        certificate: Optional[str] = None,
        ranges: Sequence[_RangeLike] = ...,
        created: Optional[_Time] = None,
    ) -> None: ...
    def remove_connector(self, tenant: str, name: str) -> None: ...
    def add_tenant(self, tenant: str, licensed: bool = True) -> None: ...
    def remove_tenant(self, tenant: str) -> None: ...
    def set_licensed(self, tenant: str, licensed: bool) -> None: ...
    def add_low_reputation(self, range: _RangeLike) -> None: ...
    def remove_low_reputation(self, range: _RangeLike) -> None: ...
    def is_low_reputation(self, ip: _IpLike) -> bool: ...
    def restricted(self, now: _Time) -> list[Restriction]: ...
    def suspicious_connectors(self, now: _Time) -> list[SuspiciousConnector]: ...
    def audit(self, tenant: str) -> list[Event]:
        """The tenant's audit trail, oldest first."""
    def tenants(self) -> list[str]: ...
    def usage(self) -> dict[str, tuple[int, int]]:
        """``{table: (used, capacity)}``."""
    def reload(self, policy: Policy) -> ReloadReport:
        """Swaps in ``policy``, keeping the state of tenants that remain."""
    def snapshot(self) -> bytes: ...
    def restore_snapshot(self, data: bytes) -> RestoreReport: ...
    @property
    def policy_file(self) -> str: ...
    def __contains__(self, key: str, /) -> bool: ...
    def __len__(self) -> int: ...

def explain(code: str, lang: str = "en", audience: str = "sender") -> str:
    """The explanation of a code (``"5.7.750"`` or a reason name) in ``"en"``, ``"uk"``,
    ``"pl"`` or ``"pt-BR"``, for the ``"sender"`` or the ``"admin"``."""

def title(code: str, lang: str = "en") -> str:
    """A one-line title ("Message not delivered: ..."), the NDR subject."""

def reply(code: str) -> str:
    """The exact SMTP reply line of a code."""

def render_ndr(
    code: str,
    *,
    to: str,
    recipients: Sequence[str],
    now: _Time,
    lang: str = "en",
    reporting_mta: str = "localhost",
    from_addr: Optional[str] = None,
    arrival: Optional[_Time] = None,
    boundary: Optional[str] = None,
    message_id: Optional[str] = None,
    original_headers: Optional[str] = None,
) -> str:
    """An RFC 3464 ``multipart/report`` delivery status notification (CRLF line endings)."""
