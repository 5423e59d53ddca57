"""Log readers, the what-if replay of the bundled example, the figure, NDRs and the command."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import outguard
from conftest import DATA, EXAMPLES, run_cli
from outguard.logs import MAX_TIME, LogError, TenantMap, read_log
from outguard.report import ReplayResult, format_summary, replay_log

FRIDAY = int(dt.datetime(2026, 3, 6, tzinfo=dt.timezone.utc).timestamp())
WEDNESDAY = int(dt.datetime(2026, 3, 4, tzinfo=dt.timezone.utc).timestamp())


@pytest.fixture(scope="module")
def week() -> ReplayResult:
    policy = outguard.Policy.load(EXAMPLES / "policy.toml")
    data = read_log(str(EXAMPLES / "week.csv"))
    return replay_log(outguard.Engine(policy), data, chunk=7_000)


def test_bundled_example_is_small_and_deterministic() -> None:
    assert (EXAMPLES / "week.csv").stat().st_size < 5_000_000
    assert (EXAMPLES / "generate.py").exists()
    assert len(outguard.Policy.load(EXAMPLES / "policy.toml").tenants) >= 250


def test_bundled_replay_blocks(week: ReplayResult) -> None:
    blocked = {(b.tenant, b.code) for b in week.blocks}
    assert blocked == {("fourthcoffee", "5.7.705"), ("tailspin", "5.7.750")}
    # The compromised tenant: tripped early on Wednesday, manual, still blocked at the end.
    [fc] = [b for b in week.blocks if b.tenant == "fourthcoffee"]
    assert fc.rule == "tenant_threshold" and fc.until == "release" and fc.end is None
    assert WEDNESDAY + 2 * 3600 <= fc.start < WEDNESDAY + 3 * 3600
    assert fc.event.suspicious >= 50 and fc.event.total >= 100
    assert fc.refused > 1_500
    # The on-prem relay: 6-hour blocks that expire, on weekdays; registered mail flows.
    tail = [b for b in week.blocks if b.tenant == "tailspin"]
    assert len(tail) >= 3
    assert all(b.end_kind == "expired" and b.end is not None and b.end - b.start == 6 * 3600 for b in tail)
    assert all(dt.datetime.fromtimestamp(b.start, dt.timezone.utc).weekday() < 5 for b in tail)
    assert week.tenants["tailspin"].refused.keys() == {"5.7.750"}
    # Exempt relays and forwarding never trip.
    for t in ("contoso", "adventureworks"):
        assert not week.tenants[t].blocks and not week.tenants[t].refused
    # The trial tenant on a low-reputation address: every message 5.7.708.
    lit = week.tenants["litware-trial"]
    assert lit.refused["5.7.708"] == lit.messages > 0 and lit.lowrep_ips.keys() == {"198.51.100.23"}
    # The exception of fabrikam runs out on Friday 00:00Z.
    fab = week.tenants["fabrikam"]
    assert fab.refused.keys() == {"5.7.708"} and fab.first_refused is not None and fab.first_refused >= FRIDAY
    # Lapsed subscription: everything 5.7.705 (lapsed), no block event.
    ww = week.tenants["wideworld"]
    assert ww.reasons["tenant_lapsed"] == ww.messages > 0 and not ww.blocks
    # The newsletter sender crosses the warning ratio only.
    assert week.tenants["proseware"].warnings and not week.tenants["proseware"].blocks
    refused = week.refused()
    assert refused["5.1.7"] == 1 and refused["5.7.64"] > 0
    classes = set(week.columns["sender_class"])
    assert {"registered", "exempt", "unregistered", "null"} <= classes
    assert [m.line for m in week.data.malformed] and len(week.data.malformed) == 2


def test_bundled_summary_text(week: ReplayResult) -> None:
    text = format_summary(week)
    assert "Blocked tenants (2):" in text
    assert "fourthcoffee: 5.7.705 tenant_threshold, 1 block" in text
    assert "until released: still blocked at the end of the log" in text
    assert "tailspin: 5.7.750 unregistered_domain" in text and "expired 2026-03-0" in text
    assert "litware-trial: 5.7.708 low_reputation_ip" in text
    assert "wideworld: 5.7.705 subscription lapsed" in text
    assert "Malformed log lines: 2 (skipped)" in text
    for m in week.data.malformed:
        assert f"line {m.line}: " in text


def test_replay_command_with_plot_and_ndrs(tmp_path: Path) -> None:
    png = tmp_path / "week.png"
    ndr = tmp_path / "ndr"
    js = tmp_path / "summary.json"
    p = run_cli(
        "replay", "--policy", "examples/policy.toml", "examples/week.csv",
        "--plot", str(png), "--ndr-dir", str(ndr), "--json", str(js), "--lang", "uk",
    )
    assert p.returncode == 0, p.stderr
    assert "fourthcoffee: 5.7.705 tenant_threshold" in p.stdout
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"IHDR" in raw[:32] and raw.rstrip().endswith(b"IEND\xaeB`\x82")
    assert b"Software" in raw and b"matplotlib" in raw.lower()
    emls = sorted(ndr.glob("*.eml"))
    doc = json.loads(js.read_text(encoding="utf-8"))
    assert len(emls) == doc["ndrs"] > 1_000
    assert f"{len(emls):,} written to" in p.stdout
    one = next(e for e in emls if "5.7.705-fourthcoffee" in e.name).read_text(encoding="utf-8")
    assert "Status: 5.7.705" in one and "Content-Language: uk" in one
    assert "Diagnostic-Code: smtp; 550 5.7.705 Access denied, tenant has exceeded threshold" in one
    assert {(b["tenant"], b["code"]) for b in doc["blocks"]} == {("fourthcoffee", "5.7.705"), ("tailspin", "5.7.750")}


def test_plot_without_blocks(tmp_path: Path) -> None:
    from outguard.plot import plot_blocks

    log = tmp_path / "quiet.csv"
    log.write_text("time,mail_from,tenant\n2026-03-02T10:00:00Z,a@contoso.com,contoso\n", encoding="utf-8")
    pol = outguard.Policy.load(DATA / "maillog-policy.toml")
    res = replay_log(outguard.Engine(pol), read_log(str(log)))
    assert plot_blocks(res, str(tmp_path / "q.png")) == 0
    assert (tmp_path / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_maillog_fixture_parses() -> None:
    d = read_log(str(DATA / "maillog"), tenant_map=TenantMap.load(str(DATA / "tenant-map.txt")), year=2026)
    assert d.format == "maillog" and len(d) == 6
    cols = d.columns
    assert cols["mail_from"] == [
        "alice@contoso.com", "mallory@contoso.com", "news@example.org",
        "cron@app.contoso.com", "erin@contoso.com", "heidi@fabrikam.com",
    ]
    t0 = int(dt.datetime(2026, 3, 2, 9, 14, 1, tzinfo=dt.timezone.utc).timestamp())
    assert cols["time"][0] == t0
    assert cols["verdict"] == ["clean", "spam", "clean", "clean", "spam", "bulk"]
    assert cols["tenant"] == ["contoso", "contoso", "contoso", None, "contoso", "contoso"]
    assert cols["recipients"] == [2, 1, 1, 1, 1, 3]
    assert cols["rcpt_to"][0] == ["bob@example.org", "carol@example.net"]
    assert cols["client_ip"][0] == "100.64.3.4" and cols["auth_user"][0] == "alice@contoso.com"
    # Local forwarding back out: forwarded, with the original's DKIM result.
    assert (cols["forwarded"][2], cols["dkim_pass"][2]) == (True, True)
    # The content filter's re-injected copy is not a second message.
    assert cols["mail_from"].count("erin@contoso.com") == 1
    assert d.inbound == 2 and d.incomplete == 1
    assert [(m.line, m.reason.split(":")[0]) for m in d.malformed] == [
        (37, "not a syslog line"), (49, "not a syslog line"), (51, "qmgr"),
    ]
    res = replay_log(outguard.Engine(outguard.Policy.load(DATA / "maillog-policy.toml")), d)
    assert res.columns["sender_class"][2] == "exempt"
    assert res.columns["code"] == [None, None, None, "5.7.64", None, None]


def test_maillog_command(tmp_path: Path) -> None:
    p = run_cli(
        "replay", "--policy", str(DATA / "maillog-policy.toml"), str(DATA / "maillog"),
        "--tenant-map", str(DATA / "tenant-map.txt"), "--year", "2026", "--no-progress",
    )
    assert p.returncode == 0, p.stderr
    assert "(maillog)" in p.stdout and "6 messages" in p.stdout
    assert "skipped: 2 inbound (local delivery only), 1 without a sender" in p.stdout
    assert "line 37: not a syslog line" in p.stdout and "line 51: qmgr: bad nrcpt 'many'" in p.stdout


def test_malformed_lines_are_counted_with_line_numbers(tmp_path: Path) -> None:
    csv_log = tmp_path / "log.csv"
    csv_log.write_text(
        "time,mail_from,tenant,client_ip,forwarded,recipients,verdict\n"
        "2026-03-02T10:00:00Z,a@contoso.com,contoso,203.0.113.1,,,\n"
        "yesterday,a@contoso.com,contoso,,,,\n"
        "2026-03-02T10:00:01Z,a@contoso.com,contoso,999.1.1.1,,,\n"
        "2026-03-02T10:00:02Z,a@contoso.com,contoso,,maybe,,\n"
        "2026-03-02T10:00:03Z,a@contoso.com,contoso,,,-4,\n"
        "2026-03-02T10:00:04Z,a@contoso.com,contoso,,,,spammy\n"
        "2026-03-02T10:00:05Z,a@contoso.com\n"
        "2026-03-02T10:00:06,a@contoso.com,contoso,,,,\n"
        "\n"
        "1772445606,,contoso,,true,3,spam\n",
        encoding="utf-8",
    )
    d = read_log(str(csv_log))
    assert len(d) == 2 and d.lines == [2, 11]
    assert [m.line for m in d.malformed] == [3, 4, 5, 6, 7, 8, 9]
    reasons = " | ".join(m.reason for m in d.malformed)
    for word in ("bad time", "bad IP", "forwarded", "recipients", "unknown verdict", "fields", "no UTC offset"):
        assert word in reasons
    assert d.columns["mail_from"][1] == "" and d.columns["recipients"][1] == 3

    jl = tmp_path / "log.jsonl"
    jl.write_text(
        '{"time": 1772445600, "mail_from": "a@contoso.com", "tenant": "contoso", "forwarded": true}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"mail_from": "a@contoso.com"}\n'
        '{"time": "2026-03-02T10:00:00+02:00", "mail_from": "b@contoso.com", "rcpt_to": ["x@y.example"]}\n',
        encoding="utf-8",
    )
    d = read_log(str(jl))
    assert len(d) == 2 and [m.line for m in d.malformed] == [2, 3, 4]
    assert d.columns["time"][0] == 1772445600 - 7200 and d.columns["rcpt_to"][0] == ["x@y.example"]

    p = run_cli("replay", "--policy", str(DATA / "maillog-policy.toml"), str(csv_log))
    assert p.returncode == 0, p.stderr
    assert "Malformed log lines: 7 (skipped)" in p.stdout and "line 3: bad time 'yesterday'" in p.stdout

    # Values that are well-formed JSON or CSV but no time or text outguard can take.
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        '{"time": 1e400, "mail_from": "a@contoso.com"}\n'
        '{"time": Infinity, "mail_from": "a@contoso.com"}\n'
        '{"time": 18446744073709551616, "mail_from": "a@contoso.com"}\n'
        '{"time": 18446744073709551615, "mail_from": "a@contoso.com"}\n'
        '{"time": 1772445600, "mail_from": "a@contoso.com", "tenant": "\\ud800"}\n'
        '{"time": 1772445600, "mail_from": "\\udcff@contoso.com"}\n'
        '{"time": 1772445600, "mail_from": "a@contoso.com", "rcpt_to": ["\\ud83d@x.example"]}\n'
        '{"time": 32503680000, "mail_from": "a@contoso.com", "tenant": "contoso"}\n',
        encoding="utf-8",
    )
    d = read_log(str(odd))
    assert [m.line for m in d.malformed] == [1, 2, 3, 4, 5, 6, 7] and d.lines == [8]
    reasons = " | ".join(m.reason for m in d.malformed)
    assert "out of range" in reasons and "tenant: not valid Unicode" in reasons and "mail_from: not valid Unicode" in reasons
    p = run_cli("replay", "--policy", str(DATA / "maillog-policy.toml"), str(odd))
    assert p.returncode == 0, p.stderr
    assert "Malformed log lines: 7 (skipped)" in p.stdout
    # The latest time a log may carry replays, with its blocks; RFC 3339 text past it is
    # malformed like a number past it.
    late = tmp_path / "late.csv"
    late.write_text(
        "time,mail_from,tenant\n3000-01-01T00:00:00-00:01,a@contoso.com,contoso\n"
        + "".join(f"{MAX_TIME},x@elsewhere.example,contoso\n" for _ in range(12)),
        encoding="utf-8",
    )
    d = read_log(str(late))
    assert [m.line for m in d.malformed] == [2] and "out of range" in d.malformed[0].reason
    p = run_cli("replay", "--policy", str(DATA / "maillog-policy.toml"), str(late), "--plot", str(tmp_path / "late.png"))
    assert p.returncode == 0, p.stderr
    assert "Malformed log lines: 1 (skipped)" in p.stdout
    csv_odd = tmp_path / "odd.csv"
    csv_odd.write_text("time,mail_from\n99999999999999999999,a@contoso.com\n1e400,a@contoso.com\n", encoding="utf-8")
    d = read_log(str(csv_odd))
    assert [m.line for m in d.malformed] == [2, 3] and len(d) == 0

    with pytest.raises(LogError, match="lacks time"):
        bad = tmp_path / "nohead.csv"
        bad.write_text("when,who\n1,a@b.example\n", encoding="utf-8")
        read_log(str(bad))


def test_check_and_explain_commands() -> None:
    pol = "examples/policy.toml"
    ok = run_cli("check", "--policy", pol, "--mail-from", "ops@tailspintoys.example", "--tenant", "tailspin", "--now", "2026-03-02T10:00:00Z")
    assert ok.returncode == 0 and ok.stdout.startswith("accepted"), ok.stderr
    no = run_cli(
        "check", "--policy", pol, "--mail-from", "info@litware.example",
        "--auth-user", "info@litware.example", "--client-ip", "198.51.100.23", "--explain", "pl",
    )
    assert no.returncode == 1
    assert no.stdout.startswith("550 5.7.708 Access denied, traffic not accepted from this IP")
    assert "tenant: litware-trial (by auth_user)" in no.stdout and "5.7.708" in no.stdout.split("\n", 3)[3]
    js = run_cli("check", "--policy", pol, "--mail-from", "a@b.example", "--client-ip", "192.0.2.9", "--json")
    assert js.returncode == 1 and json.loads(js.stdout)["code"] == "5.7.64"
    ex = run_cli("explain", "5.7.750", "--lang", "pl", "--audience", "admin")
    assert ex.returncode == 0 and "5.7.750" in ex.stdout
    assert run_cli("explain", "5.9.9").returncode == 2
    assert run_cli("explain", "5.7.750", "--lang", "xx").returncode == 2
    for args in ((), ("replay",), ("check",), ("compile",), ("explain",)):
        h = run_cli(*args, "--help")
        assert h.returncode == 0 and "usage: outguard" in h.stdout
    assert "exit codes" in run_cli("--help").stdout
    assert run_cli().returncode == 2
    assert run_cli("replay", "examples/week.csv").returncode == 2  # --policy missing


def test_policy_error_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules.unregistered_domain]\nlimit = -1\n", encoding="utf-8")
    p = run_cli("check", "--policy", str(bad), "--mail-from", "a@b.example")
    assert p.returncode == 2
    assert f"{bad}:2:" in p.stderr and "rules.unregistered_domain.limit" in p.stderr
    p = run_cli("replay", "--policy", "examples/policy.toml", str(tmp_path / "missing.csv"))
    assert p.returncode == 2 and "missing.csv" in p.stderr


def test_state_round_trip_through_commands(tmp_path: Path) -> None:
    state = tmp_path / "state.bin"
    p = run_cli("replay", "--policy", "examples/policy.toml", "examples/week.csv", "--save-state", str(state), "--json", "-")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["messages"] > 20_000
    c = run_cli("check", "--policy", "examples/policy.toml", "--state", str(state), "--mail-from", "alice@fourthcoffee.example", "--tenant", "fourthcoffee", "--now", "2026-03-09T00:00:00Z")
    assert c.returncode == 1 and "5.7.705" in c.stdout
    state.write_bytes(b"garbage")
    c = run_cli("check", "--policy", "examples/policy.toml", "--state", str(state), "--mail-from", "a@b.example")
    assert c.returncode == 2 and "state file" in c.stderr


def test_progress_bar_on_request() -> None:
    """--progress draws the bar on stderr even when it is not a terminal; without it (and
    not a terminal) nothing is drawn."""
    args = ("replay", "--policy", "examples/policy.toml", "examples/week.csv", "--limit", "1")
    shown = run_cli(*args, "--progress")
    assert shown.returncode == 0, shown.stderr
    assert "replaying" in shown.stderr and "reading log" in shown.stderr
    quiet = run_cli(*args)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert shown.stdout == quiet.stdout


def test_unexpected_errors_exit_3(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug never exits 1 (which a script reads as "refused")."""
    from outguard import cli

    def boom(_: Any) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_explain", boom)
    assert cli.main(["explain", "5.7.750"]) == 3
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "unexpected error" in err
