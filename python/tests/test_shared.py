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


def test_compile_command_creates_and_moves_state(tmp_path: Path) -> None:
    """`outguard compile`: an image and a fresh state file, then a policy change rolled out
    with the counters of the tenants that remain."""
    from conftest import run_cli

    pol = tmp_path / "policy.toml"
    pol.write_text(SCENARIO, encoding="utf-8")
    img1, img2, state = tmp_path / "p1.ogp", tmp_path / "p2.ogp", tmp_path / "state.ogs"
    p = run_cli("compile", str(pol), "-o", str(img1), "--state", str(state))
    assert p.returncode == 0, p.stderr
    assert "3 tenants" in p.stdout and "created" in p.stdout
    e = outguard.SharedEngine(None, state)
    assert Path(e.image_path) == img1
    for k in range(3):  # contoso spends its allowance (limit = 3)
        e.evaluate(now=NOW + k, mail_from="x@elsewhere.example", tenant="contoso")
    assert not e.check(now=NOW + 5, mail_from="x@elsewhere.example", tenant="contoso").accepted
    del e

    # The same path as the state's image is refused, and nothing is touched.
    p = run_cli("compile", str(pol), "-o", str(img1), "--state", str(state))
    assert p.returncode == 2 and "is the image" in p.stderr
    assert outguard.SharedEngine(None, state).status("contoso", now=NOW + 5).counters.unregistered == 3

    # A new policy: trial and lapsed removed, a tenant added; contoso keeps its counters and
    # its block.
    pol.write_text(SCENARIO.split("[[tenants]]\nid = \"trial\"")[0] + '[[tenants]]\nid = "newco"\ndomains = ["newco.example"]\n', encoding="utf-8")
    p = run_cli("compile", str(pol), "-o", str(img2), "--state", str(state))
    assert p.returncode == 0, p.stderr
    assert "tenants added: 1, removed: 2" in p.stdout
    e = outguard.SharedEngine(None, state)
    assert Path(e.image_path) == img2
    assert e.status("contoso", now=NOW + 5).counters.unregistered == 3
    d = e.check(now=NOW + 5, mail_from="x@elsewhere.example", tenant="contoso")
    assert (d.accepted, d.reply) == (False, R750)
    assert e.check(now=NOW + 5, mail_from="a@newco.example", tenant="newco").accepted
    with pytest.raises(outguard.UnknownTenantError):
        e.status("trial", now=NOW + 5)


def test_compile_command_errors(tmp_path: Path) -> None:
    from conftest import run_cli

    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.unregistered_domain]\nlimit = -1\n", encoding="utf-8")
    out = tmp_path / "p.ogp"
    p = run_cli("compile", str(bad), "-o", str(out))
    assert p.returncode == 2 and f"{bad}:2:" in p.stderr and not out.exists()
    good = tmp_path / "good.toml"
    good.write_text(SCENARIO, encoding="utf-8")
    p = run_cli("compile", str(good), "-o", str(tmp_path / "no" / "dir" / "p.ogp"))
    assert p.returncode == 2 and "No such file" in p.stderr
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a state file")
    p = run_cli("compile", str(good), "-o", str(out), "--state", str(junk))
    assert p.returncode == 2 and "not an outguard state file" in p.stderr
    assert junk.read_bytes() == b"not a state file"
    p = run_cli("compile", "--help")
    assert p.returncode == 0 and "--state" in p.stdout and "--force" in p.stdout
    assert run_cli("compile", str(good)).returncode == 2  # -o missing

    # An existing file is replaced only with --force; never the state file itself.
    img, state = tmp_path / "p1.ogp", tmp_path / "st.ogs"
    assert run_cli("compile", str(good), "-o", str(img), "--state", str(state)).returncode == 0
    before = state.read_bytes()
    p = run_cli("compile", str(good), "-o", str(state), "--state", str(state), "--force")
    assert p.returncode == 2 and "is the state file" in p.stderr and state.read_bytes() == before
    p = run_cli("compile", str(good), "-o", str(good))
    assert p.returncode == 2 and "exists" in p.stderr and good.read_text(encoding="utf-8") == SCENARIO
    other = tmp_path / "other.ogp"
    other.write_bytes(b"x")
    p = run_cli("compile", str(good), "-o", str(other))
    assert p.returncode == 2 and "--force" in p.stderr and other.read_bytes() == b"x"
    p = run_cli("compile", str(good), "-o", str(other), "--force")
    assert p.returncode == 0 and other.read_bytes() != b"x"
    # A state file in a directory that does not exist: refused before anything is written.
    p = run_cli("compile", str(good), "-o", str(tmp_path / "p9.ogp"), "--state", str(tmp_path / "nodir" / "st"))
    assert p.returncode == 2 and "nodir: no such directory" in p.stderr and not (tmp_path / "p9.ogp").exists()
