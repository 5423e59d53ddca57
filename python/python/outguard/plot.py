"""The replay figure: per blocked tenant and rule, the windowed counts against the thresholds over
time, with block and release marks. Needs matplotlib (``pip install matplotlib``); uses Agg."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Optional

from .logs import MAX_TIME
from .report import Block, ReplayResult

__all__ = ["plot_blocks"]


def _dt_utc(t: int) -> _dt.datetime:
    # (A block may end after the last time a date can show: drawn at that last time.)
    return _dt.datetime.fromtimestamp(min(t, MAX_TIME), _dt.timezone.utc)


def plot_blocks(res: ReplayResult, path: str, max_panels: int = 12, dpi: int = 110) -> int:
    """Writes a PNG with one panel per (blocked tenant, rule), at most ``max_panels``; returns
    the number of panels (0: nothing was blocked; the figure then says so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    pairs: list[tuple[str, str]] = []
    for b in res.blocks:
        if (b.tenant, b.rule) not in pairs:
            pairs.append((b.tenant, b.rule))
    shown = pairs[:max_panels]
    rows = max(1, len(shown))
    fig, axes = plt.subplots(rows, 1, figsize=(11, 2.9 * rows), squeeze=False)
    data, cols = res.data, res.columns
    times = data.columns["time"]
    t_end = times[-1] if times else 0
    if not shown:
        blank: Any = axes[0][0]
        blank.text(0.5, 0.5, "No tenant was blocked", ha="center", va="center", fontsize=14)
        blank.set_axis_off()
    for (tenant, rule), row in zip(shown, axes):
        ax: Any = row[0]
        idx = [i for i, t in enumerate(cols["tenant"]) if t == tenant]
        x = [_dt_utc(times[i]) for i in idx]
        limits = res.tenants[tenant].limits
        if rule == "tenant_threshold":
            total = [cols["total"][i] for i in idx]
            susp = [cols["suspicious"][i] for i in idx]
            ax.step(x, total, where="post", color="#7f7f7f", lw=1.2, label="messages in window")
            ax.step(x, susp, where="post", color="#d62728", lw=1.6, label="suspicious in window")
            if limits is not None:
                trip = [max(limits.min_suspicious, limits.max_ratio * t) for t in total]
                ax.step(x, trip, where="post", color="#d62728", lw=1, ls="--", label="trips at (suspicious)")
                ax.axhline(limits.min_messages, color="#7f7f7f", lw=0.8, ls=":", label="min messages")
            code = "5.7.705"
        else:
            unreg = [cols["unregistered"][i] for i in idx]
            ax.step(x, unreg, where="post", color="#1f77b4", lw=1.6, label="unregistered-domain messages in window")
            if limits is not None:
                ax.axhline(limits.limit, color="#1f77b4", lw=1, ls="--", label=f"allowance ({limits.limit})")
            code = "5.7.750"
        blocks: list[Block] = [b for b in res.tenants[tenant].blocks if b.rule == rule]
        for k, b in enumerate(blocks):
            end = b.end if b.end is not None else t_end
            ax.axvspan(_dt_utc(b.start), _dt_utc(max(end, b.start)), color="#d62728", alpha=0.12, lw=0,
                       label="blocked" if k == 0 else None)
            ax.axvline(_dt_utc(b.start), color="#d62728", lw=1.2)
            ax.annotate(f"blocked, {b.refused:,} refused", xy=(_dt_utc(b.start), 0.97), xycoords=("data", "axes fraction"),
                        xytext=(-2, 0), textcoords="offset points", fontsize=7, color="#d62728",
                        rotation=90, ha="right", va="top")
            if b.end is not None:
                ax.axvline(_dt_utc(b.end), color="#2ca02c", lw=1.2, ls="-.", label=(b.end_kind or "ended") if k == 0 else None)
        mode = " (monitor)" if blocks and blocks[0].monitor else ""
        ax.set_title(f"{tenant}: {code} {rule}{mode}", fontsize=10, loc="left")
        ax.set_ylabel("count")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fmt = mdates.DateFormatter("%m-%d %H:%M", tz=_dt.timezone.utc)  # type: ignore[no-untyped-call,unused-ignore]
        ax.xaxis.set_major_formatter(fmt)
        if times:
            ax.set_xlim(_dt_utc(times[0]), _dt_utc(t_end))
        ax.set_ylim(bottom=0)
    extra = len(pairs) - len(shown)
    title = f"outguard replay of {data.path} with {res.policy_file}"
    if extra > 0:
        title += f" ({extra} more blocked panels not shown)"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Software": f"matplotlib {matplotlib.__version__} (outguard)"})
    plt.close(fig)
    return len(shown)


def available() -> Optional[str]:
    """``None`` when matplotlib can be imported, else why not."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return str(e)
    return None
