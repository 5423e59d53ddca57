#!/usr/bin/env python3
"""End to end: a private Postfix on 127.0.0.1 with outguard-milter, relaying to smtp-sink.

Shows with swaks and Python's smtplib that
  - a registered sender is relayed;
  - an unregistered sender is relayed until the allowance (3) is spent, then refused with
    exactly "550 5.7.750 Service unavailable. Client blocked from sending from unregistered
    domains", while the same tenant's registered domain still relays;
  - a tenant whose spam verdicts (X-Spam-Flag: YES) cross the threshold gets 550 5.7.705 for
    everything;
  - a client on the low-reputation list (presented with XCLIENT) gets 550 5.7.708;
  - after `release` on the admin socket mail flows again;
  - SIGHUP reloads the policy (an IP exception lets the low-reputation client through, counters
    survive); SIGTERM saves the state file and a restarted milter restores it.
Assertions are on what smtp-sink received (its -D dump), not only on SMTP replies.

Needs root, postfix (with smtp-sink), swaks and the built milter. Usage:
  postfix_e2e.py MILTER_BINARY [MILTER_OPTIONS...]   (e.g. -E for the event-loop transport)
Without the tools it exits 77 (skipped), except with CI=true, where that is a failure.
Every process it starts is stopped on exit.
"""

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage

REPLY_750 = "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
REPLY_705 = "550 5.7.705 Access denied, tenant has exceeded threshold"
REPLY_708 = "550 5.7.708 Access denied, traffic not accepted from this IP"

POLICY = """
[rules.tenant_threshold]
min_messages = 4
min_suspicious = 2
max_ratio = 0.5
warn_ratio = 0.25
block = "manual"

[rules.unregistered_domain]
limit = 3
block = "manual"

[rules.low_reputation_ip]
scope = "all"
ranges = ["192.0.2.0/24"]

[[tenants]]
id = "contoso"
domains = ["contoso.com"]
connectors = [ { name = "loopback", ranges = ["127.0.0.0/8"] } ]

[[tenants]]
id = "spammy"
domains = ["spammy.example"]

[[tenants]]
id = "newco"
licensed = false
domains = ["newco.example"]
connectors = [ { name = "office", ranges = ["192.0.2.0/24"] } ]
"""

EXCEPTION = """ip_exceptions = [ { range = "192.0.2.10/32", expires = "2099-01-01T00:00:00Z" } ]
"""

PROCS = []
POSTFIX_ETC = None
WORKDIR = None
FAILURES = []
PASSED = 0


def log(msg):
    print(f"[e2e] {msg}", flush=True)


def check(cond, what):
    global PASSED
    if cond:
        PASSED += 1
        log(f"ok   {what}")
    else:
        FAILURES.append(what)
        log(f"FAIL {what}")
        raise SystemExit(1)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def cleanup():
    if POSTFIX_ETC:
        run(["postfix", "-c", POSTFIX_ETC, "stop"])
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


class Milter:
    def __init__(self, binary, options, policy, port, state, admin, logfile):
        self.args = [binary, *options, "-a", admin, policy, f"inet:{port}@127.0.0.1", state]
        self.port, self.admin, self.logfile = port, admin, logfile
        self.proc = None

    def start(self):
        out = open(self.logfile, "a")
        self.proc = subprocess.Popen(self.args, stdout=out, stderr=out)
        PROCS.append(self.proc)
        check(wait_port(self.port), "milter listens")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        check(rc == 0, f"milter exits cleanly on SIGTERM (rc={rc})")

    def admin_cmd(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.admin)
            s.sendall(line.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.decode()

    def log_text(self):
        with open(self.logfile) as f:
            return f.read()


def swaks(port, sender, marker, *extra, headers=()):
    cmd = ["swaks", "--server", f"127.0.0.1:{port}", "--from", sender, "--to",
           f"rcpt-{marker}@dest.example", "--header", f"Subject: {marker}", "--timeout", "20"]
    for h in headers:
        cmd += ["--header", h]
    cmd += list(extra)
    r = run(cmd)
    return r.returncode, r.stdout + r.stderr


def smtplib_send(port, sender, marker, headers=()):
    """Sends one message; returns (code, reply line) of a refusal, or (250, '') when queued."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"rcpt-{marker}@dest.example"
    msg["Subject"] = marker
    for h in headers:
        k, v = h.split(":", 1)
        msg[k] = v.strip()
    msg.set_content(f"body of {marker}\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        try:
            s.send_message(msg, from_addr=sender, to_addrs=[f"rcpt-{marker}@dest.example"])
            return 250, ""
        except smtplib.SMTPSenderRefused as e:
            return e.smtp_code, f"{e.smtp_code} {e.smtp_error.decode()}"


def sink_markers(dump):
    # smtp-sink may write to the dump file or to siblings with a suffix: read them all.
    text = ""
    folder = os.path.dirname(dump)
    for name in sorted(os.listdir(folder)):
        if name.startswith(os.path.basename(dump)):
            try:
                with open(os.path.join(folder, name), errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass  # a sibling smtp-sink was still writing, since folded into the dump
    return {line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.lower().startswith("subject:")}


def wait_delivered(dump, markers, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if set(markers) <= sink_markers(dump):
            return True
        time.sleep(0.2)
    return False


def refused_line(output, code):
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("<** ") and code in line:
            return line[4:]
    return None


def main():
    global POSTFIX_ETC
    ci = os.environ.get("CI") == "true"
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    milter_bin = os.path.abspath(sys.argv[1])
    milter_options = sys.argv[2:]
    missing = [t for t in ("postfix", "postconf", "smtp-sink", "swaks") if shutil.which(t) is None]
    if not os.access(milter_bin, os.X_OK):
        missing.append(milter_bin)
    if os.geteuid() != 0:
        missing.append("root")
    if missing:
        log(f"missing: {', '.join(missing)}")
        return 1 if ci else 77

    global WORKDIR
    d = WORKDIR = tempfile.mkdtemp(prefix="og-postfix-")
    os.chmod(d, 0o755)
    etc, spool, data = f"{d}/etc", f"{d}/spool", f"{d}/data"
    for p in (etc, spool, data):
        os.makedirs(p)
    shutil.chown(data, "postfix")
    shutil.copy("/etc/postfix/master.cf", f"{etc}/master.cf")
    open(f"{etc}/main.cf", "w").close()
    smtp_port, sink_port, milter_port = free_port(), free_port(), free_port()
    dump, policy, state = f"{d}/sink/dump", f"{d}/policy.toml", f"{d}/state.bin"
    admin, mlog = f"{d}/admin.sock", f"{d}/milter.log"
    with open(policy, "w") as f:
        f.write(POLICY)

    # The sink that plays the next hop (it drops privileges to nobody: give it its file).
    os.makedirs(f"{d}/sink")
    shutil.chown(f"{d}/sink", "nobody")
    open(dump, "w").close()
    shutil.chown(dump, "nobody")
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", "-D", dump,
                             f"127.0.0.1:{sink_port}", "64"],
                            stdout=open(f"{d}/sink.log", "w"), stderr=subprocess.STDOUT)
    PROCS.append(sink)
    check(wait_port(sink_port), "smtp-sink listens")

    milter = Milter(milter_bin, milter_options, policy, milter_port, state, admin, mlog)
    milter.start()

    POSTFIX_ETC = etc
    settings = [
        "compatibility_level=3.6", "myhostname=mta-test.localdomain", "mydestination=",
        "inet_interfaces=127.0.0.1", "inet_protocols=ipv4",
        "mynetworks=127.0.0.0/8 192.0.2.0/24", f"queue_directory={spool}",
        f"data_directory={data}", "meta_directory=/etc/postfix", f"maillog_file={d}/maillog",
        f"maillog_file_prefixes={d}", f"relayhost=[127.0.0.1]:{sink_port}",
        "smtpd_authorized_xclient_hosts=127.0.0.0/8",
        f"smtpd_milters=inet:127.0.0.1:{milter_port}", "milter_default_action=tempfail",
    ]
    r = run(["postconf", "-c", etc, "-e"] + settings)
    check(r.returncode == 0, f"postconf settings {r.stderr.strip()}")
    run(["postconf", "-c", etc, "-F", "*/*/chroot = n"])
    run(["postconf", "-c", etc, "-M#", "smtp/inet"])
    r = run(["postconf", "-c", etc, "-Me",
             f"127.0.0.1:{smtp_port}/inet=127.0.0.1:{smtp_port} inet n - n - - smtpd"])
    check(r.returncode == 0, "postconf master.cf listener")
    r = run(["postfix", "-c", etc, "check"])
    check(r.returncode == 0, f"postfix check {r.stdout}{r.stderr}")
    r = run(["postfix", "-c", etc, "start"])
    if r.returncode != 0 and os.path.exists(f"{d}/maillog"):
        print(open(f"{d}/maillog").read())
    check(r.returncode == 0, "postfix starts")
    check(wait_port(smtp_port), "postfix listens")

    # 1. A registered sender is relayed (swaks and smtplib).
    rc, out = swaks(smtp_port, "alice@contoso.com", "reg-1")
    check(rc == 0, "swaks: registered sender accepted")
    check(smtplib_send(smtp_port, "bob@contoso.com", "reg-2")[0] == 250,
          "smtplib: registered sender accepted")
    check(wait_delivered(dump, ["reg-1", "reg-2"]), "sink received the registered mail")

    # 2. Unregistered: exactly 3 relayed, then 5.7.750; the registered domain keeps flowing.
    for i in range(3):
        code, _ = smtplib_send(smtp_port, f"u{i}@not-contoso.example", f"unreg-{i}")
        check(code == 250, f"smtplib: unregistered message {i + 1} of 3 accepted")
    code, line = smtplib_send(smtp_port, "u3@not-contoso.example", "unreg-3")
    check(line == REPLY_750, f"smtplib: 4th unregistered refused with [{line}]")
    rc, out = swaks(smtp_port, "u4@not-contoso.example", "unreg-4")
    check(rc == 23 and refused_line(out, "5.7.750") == REPLY_750,
          f"swaks: refused at MAIL FROM with [{refused_line(out, '5.7.750')}] (rc={rc})")
    rc, out = swaks(smtp_port, "alice@contoso.com", "reg-3")
    check(rc == 0, "swaks: same tenant's registered domain still accepted")
    check(wait_delivered(dump, ["unreg-0", "unreg-1", "unreg-2", "reg-3"]),
          "sink received the allowance and the registered mail")

    # 3. Spam verdicts cross the threshold: 5.7.705 for everything of that tenant.
    login = ["--xclient-login", "bob@spammy.example"]
    for i in range(4):
        hdr = ["X-Spam-Flag: YES"] if i % 2 else []
        rc, out = swaks(smtp_port, "bob@spammy.example", f"spam-{i}", *login, headers=hdr)
        check(rc == 0, f"swaks: spammy message {i + 1} of 4 accepted (spam={bool(hdr)})")
    rc, out = swaks(smtp_port, "bob@spammy.example", "spam-4", *login)
    check(rc == 23 and refused_line(out, "5.7.705") == REPLY_705,
          f"swaks: tenant blocked with [{refused_line(out, '5.7.705')}] (rc={rc})")
    rc, out = swaks(smtp_port, "<>", "spam-5", *login)
    check(rc == 23 and refused_line(out, "5.7.705") == REPLY_705, "swaks: null sender blocked too")
    check(wait_delivered(dump, ["spam-0", "spam-1", "spam-2", "spam-3"]),
          "sink received the 4 messages before the block")
    status = milter.admin_cmd("status spammy")
    check("threshold_blocked=1" in status and "suspicious=2" in status,
          f"admin status: {status.strip()}")

    # 4. Low-reputation client (XCLIENT ADDR): 5.7.708.
    rc, out = swaks(smtp_port, "x@newco.example", "lowrep-1", "--xclient-addr", "192.0.2.10")
    check(rc == 23 and refused_line(out, "5.7.708") == REPLY_708,
          f"swaks: low-reputation client refused with [{refused_line(out, '5.7.708')}] (rc={rc})")

    # 5. Release on the admin socket: mail flows again.
    restricted = milter.admin_cmd("restricted")
    check("contoso 5.7.750" in restricted and "spammy 5.7.705" in restricted,
          f"admin restricted lists both tenants: {restricted.strip()!r}")
    r1 = milter.admin_cmd("release contoso")
    r2 = milter.admin_cmd("release spammy")
    check(r1.startswith("ok released contoso (1") and r2.startswith("ok released spammy (1"),
          f"admin release: {r1.strip()} / {r2.strip()}")
    check(milter.admin_cmd("release nobody").startswith("error unknown tenant"),
          "admin release of an unknown tenant is an error")
    code, _ = smtplib_send(smtp_port, "u5@not-contoso.example", "unreg-5")
    check(code == 250, "smtplib: unregistered sender accepted after release")
    rc, out = swaks(smtp_port, "bob@spammy.example", "spam-6", *login)
    check(rc == 0, "swaks: spammy tenant accepted after release")
    check(wait_delivered(dump, ["unreg-5", "spam-6"]), "sink received the mail after release")

    # 6. SIGHUP reloads the policy: an IP exception for the low-reputation client.
    with open(policy, "w") as f:
        f.write(POLICY + EXCEPTION)
    milter.proc.send_signal(signal.SIGHUP)
    end = time.time() + 10
    while "policy reloaded" not in milter.log_text() and time.time() < end:
        time.sleep(0.1)
    check("policy reloaded" in milter.log_text(), "SIGHUP reloaded the policy")
    rc, out = swaks(smtp_port, "x@newco.example", "lowrep-2", "--xclient-addr", "192.0.2.10")
    check(rc == 0, f"swaks: low-reputation client with an exception accepted (rc={rc})")
    check(wait_delivered(dump, ["lowrep-2"]), "sink received the excepted client's mail")
    status = milter.admin_cmd("status contoso")
    check("unregistered=1 " in status or status.rstrip().endswith("unregistered=1"),
          f"counters survived the reload: {status.strip()}")

    # 7. SIGTERM saves the state; a new milter restores it.
    before = milter.admin_cmd("status spammy").strip()
    milter.stop()
    check(os.path.getsize(state) > 32, "state file written on exit")
    milter.start()
    check("state restored" in milter.log_text(), "state restored on start")
    after = milter.admin_cmd("status spammy").strip()
    check(before == after, f"state identical after restart: {after}")
    rc, out = swaks(smtp_port, "alice@contoso.com", "reg-4")
    check(rc == 0, "mail flows through the restarted milter")

    # What never arrived.
    check(wait_delivered(dump, ["reg-4"]), "sink received mail after the restart")
    got = sink_markers(dump)
    refused = {"unreg-3", "unreg-4", "spam-4", "spam-5", "lowrep-1"}
    check(not (got & refused), f"no refused message reached the sink ({sorted(got & refused)})")
    expected = {"reg-1", "reg-2", "reg-3", "reg-4", "unreg-0", "unreg-1", "unreg-2", "unreg-5",
                "spam-0", "spam-1", "spam-2", "spam-3", "spam-6", "lowrep-2"}
    check(got == expected, f"the sink holds exactly the {len(expected)} accepted messages")
    mlog_text = milter.log_text()
    check("event blocked: tenant=contoso rule=unregistered_domain" in mlog_text
          and "event blocked: tenant=spammy rule=tenant_threshold" in mlog_text,
          "the milter logged the block events")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rc = 1
    try:
        rc = main()
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        cleanup()
    if WORKDIR and rc == 0:
        shutil.rmtree(WORKDIR, ignore_errors=True)
    elif WORKDIR:
        log(f"logs kept in {WORKDIR} (maillog, milter.log, sink/)")
    if rc == 0:
        print(f"postfix e2e: {PASSED} passed, 0 failed")
    elif rc != 77:
        print(f"postfix e2e: {PASSED} passed, {max(1, len(FAILURES))} failed")
    sys.exit(rc)
