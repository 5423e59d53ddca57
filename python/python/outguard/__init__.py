"""outguard: an embeddable outbound-mail abuse guard.

For every outbound message, ``Engine.check`` answers *accept* or an exact SMTP rejection
(``550 5.7.705``, ``550 5.7.708``, ``550 5.7.750``, ``550 5.7.64``, ``550 5.1.7``)::

    import outguard
    policy = outguard.Policy.load("policy.toml")
    engine = outguard.Engine(policy)
    d = engine.check(now=1_790_000_000, mail_from="alice@contoso.com", client_ip="203.0.113.5")
    d.accepted, d.code, d.reply, d.rule, d.tenant, d.sender_class

Every call takes ``now`` (Unix seconds): the engine has no clock, so old logs replay as they
happened (``Engine.replay``, and the ``outguard replay`` command).
"""

from ._outguard import (
    CapacityError,
    Counters,
    Decision,
    Diagnostic,
    Engine,
    Event,
    NotFoundError,
    OutguardError,
    Policy,
    PolicyError,
    ReloadReport,
    Replay,
    RestoreReport,
    Restriction,
    RuleStatus,
    SharedEngine,
    SnapshotError,
    SuspiciousConnector,
    TenantStatus,
    UnknownTenantError,
    __version__,
    explain,
    render_ndr,
    reply,
    title,
)

__all__ = [
    "CapacityError",
    "Counters",
    "Decision",
    "Diagnostic",
    "Engine",
    "Event",
    "NotFoundError",
    "OutguardError",
    "Policy",
    "PolicyError",
    "ReloadReport",
    "Replay",
    "RestoreReport",
    "Restriction",
    "RuleStatus",
    "SharedEngine",
    "SnapshotError",
    "SuspiciousConnector",
    "TenantStatus",
    "UnknownTenantError",
    "__version__",
    "explain",
    "render_ndr",
    "reply",
    "title",
]
