"""A progress bar on stderr: rich if installed, else tqdm, else none (both are optional)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

Advance = Callable[[int], None]


def _noop(_n: int) -> None:
    pass


@contextmanager
def progress_bar(description: str, total: Optional[int], enabled: bool, unit: str = "") -> Iterator[Advance]:
    """Yields ``advance(n)``. Shows a bar only when ``enabled`` and rich or tqdm is installed."""
    if not enabled:
        yield _noop
        return
    try:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.console import Console
    except ImportError:
        pass
    else:
        amount: Any = DownloadColumn() if unit == "B" else MofNCompleteColumn()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            amount,
            TimeRemainingColumn(),
            # Drawn even when stderr is not a terminal: the caller enabled it (--progress).
            console=Console(stderr=True, force_terminal=True),
            transient=True,
        ) as p:
            task = p.add_task(description, total=total)
            yield lambda n: p.advance(task, n)
        return
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        yield _noop
        return
    with tqdm(
        total=total,
        desc=description,
        unit=unit or "it",
        unit_scale=bool(unit),
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar.update
