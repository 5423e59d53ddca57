"""SharedEngine: one set of counters for every process that maps the same state file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import outguard
from conftest import NOW, SCENARIO

R750 = "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"


def _files(tmp_path: Path) -> tuple[Path, Path]:
    image, state = tmp_path / "policy.ogp", tmp_path / "state.ogs"
    outguard.SharedEngine.compile(outguard.Policy.from_toml(SCENARIO), image)
    outguard.SharedEngine.create_state(image, state)
    return image, state


def test_two_handles_share_counts(tmp_path: Path) -> None:
    image, state = _files(tmp_path)
    a = outguard.SharedEngine(image, state)
    b = outguard.SharedEngine(image, state)
    for k in range(3):  # limit = 3, spent across two handles
        (a if k % 2 else b).evaluate(now=NOW + k, mail_from="x@elsewhere.example", tenant="contoso")
    d = b.check(now=NOW + 10, mail_from="x@elsewhere.example", tenant="contoso")
    assert (d.accepted, d.reply) == (False, R750)
    assert a.check(now=NOW + 10, mail_from="a@contoso.com", tenant="contoso").accepted
    assert a.status("contoso", now=NOW + 10).counters.unregistered == 3
    ev = a.release("contoso", now=NOW + 20)
    assert [e.kind for e in ev] == ["released"]
    assert b.check(now=NOW + 21, mail_from="x@elsewhere.example", tenant="contoso").accepted


def test_repair_needs_the_file_idle(tmp_path: Path) -> None:
    image, state = _files(tmp_path)
    e = outguard.SharedEngine(image, state)
    e.evaluate(now=NOW, mail_from="a@contoso.com", tenant="contoso")
    with pytest.raises(BlockingIOError, match="open"):
        outguard.SharedEngine.repair(image, state)
    del e
    assert outguard.SharedEngine.repair(None, state) == {"locks_reset": 0, "rolled_back": 0, "published": 0}
    # nothing lost by the repair
    again = outguard.SharedEngine(None, state)
    assert again.status("contoso", now=NOW).counters.total == 1
    with pytest.raises(OSError):
        outguard.SharedEngine.repair(image, tmp_path / "missing")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_count_into_one_file(tmp_path: Path) -> None:
    image, state = _files(tmp_path)
    pids = []
    for child in range(4):
        pid = os.fork()
        if pid == 0:  # each child opens the engine itself, as Exim's do
            code = 0
            try:
                e = outguard.SharedEngine(image, state)
                for k in range(25):
                    e.record(now=NOW + k, mail_from="a@contoso.com", verdict="clean", tenant="contoso")
            except BaseException:
                code = 1
            os._exit(code)
        pids.append(pid)
    assert all(os.waitpid(p, 0)[1] == 0 for p in pids)
    e = outguard.SharedEngine(None, state)  # the image named in the state file
    assert e.status("contoso", now=NOW + 30).counters.total == 100


def test_mismatched_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    image, state = _files(tmp_path)
    other = tmp_path / "other.ogp"
    outguard.SharedEngine.compile(outguard.Policy.from_toml(SCENARIO.replace("limit = 3", "limit = 4")), other)
    with pytest.raises(outguard.OutguardError):
        outguard.SharedEngine(other, state)
    data = bytearray(state.read_bytes())
    data[0] ^= 0xFF
    bad = tmp_path / "bad.ogs"
    bad.write_bytes(bytes(data))
    with pytest.raises(outguard.OutguardError):
        outguard.SharedEngine(image, bad)
