#!/usr/bin/env python3
"""The event-loop transport of outguard-milter (-E), spoken to directly: the milter protocol as
Postfix and Sendmail send it, in pieces and all at once, and malformed input.

Usage: milter_protocol.py MILTER_BINARY (the sanitizer build: ffi-c/examples/milter/
outguard-milter-asan). Every malformed packet must close only its own connection: the milter
keeps serving, and exits cleanly (and leak-free under ASan) on SIGTERM.
"""

import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

POLICY = """
[rules.unregistered_domain]
limit = 1
[[tenants]]
id = "contoso"
domains = ["contoso.com"]
connectors = [
  { name = "office", ranges = ["192.0.2.0/24"] },
  { name = "relay", certificate = "relay.contoso.com" },
]
"""

# mfdef.h
SMFIF_SETSYMLIST = 0x100
SMFIP_NOCONNECT, SMFIP_NR_HDR, SMFIP_NR_RCPT = 0x1, 0x80, 0x8000
ALL_STEPS = 0x1FFFFF

FAILED = []


def check(cond, what):
    print(f"[proto] {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILED.append(what)


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def read_packet(s):
    try:
        return read_packet_or_reset(s)
    except ConnectionResetError:
        return None


def read_packet_or_reset(s):
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body[:1], body[1:]


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    return s


def negotiate(s, actions=SMFIF_SETSYMLIST):
    s.sendall(packet(b"O", struct.pack(">III", 6, actions, ALL_STEPS)))
    cmd, data = read_packet(s)
    version, act, flags = struct.unpack(">III", data[:12])
    return cmd, version, act, flags, data[12:]


def macros(stage, **kv):
    body = stage
    for k, v in kv.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    return packet(b"D", body)


def mail(sender, client_addr="192.0.2.7"):
    return macros(b"M", **{"{client_addr}": client_addr, "i": "Q1"}) + packet(b"M", sender.encode() + b"\0")


def message_rest():
    # RCPT and headers get no reply (negotiated), end of message does.
    return (macros(b"R", i="Q1") + packet(b"R", b"<rcpt@dest.example>\0")
            + packet(b"L", b"From\0<alice@contoso.com>\0")
            + packet(b"L", b"X-Spam-Flag\0 NO\0") + packet(b"E"))


def connect_unknown(host=b"client.example"):
    """A connect step without an address (family 'U'): only macros can attribute the client."""
    return packet(b"C", host + b"\0U")


UNATTRIBUTED = (b"y", b"550 5.7.64 TenantAttribution; Relay Access Denied\0")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def negotiation_limits(sock):
    """An MTA that offers fewer protocol flags than outguard wants: only the offered ones are
    taken, and every step the MTA did not agree to leave unanswered gets its reply."""
    s = connect(sock)
    no_steps = 0x1 | 0x2 | 0x10 | 0x40 | 0x100 | 0x200  # the SMFIP_NO* bits, no SMFIP_NR_*
    s.sendall(packet(b"O", struct.pack(">III", 6, SMFIF_SETSYMLIST, no_steps)))
    cmd, data = read_packet(s)
    version, act, flags = struct.unpack(">III", data[:12])
    check(cmd == b"O" and flags & ~no_steps == 0 and flags & SMFIP_NOCONNECT,
          f"flags answered within the offer (0x{flags:x})")
    s.sendall(mail("<alice@contoso.com>") + packet(b"R", b"<rcpt@dest.example>\0")
              + packet(b"L", b"Subject\0hi\0") + packet(b"E"))
    r = [read_packet(s) for _ in range(4)]
    check(r == [(b"c", b"")] * 4, f"MAIL, RCPT, header and end each answered without SMFIP_NR_* ({r!r})")
    s.close()
    # A version 2 MTA: answered with version 2, and no symbol list (a version 6 feature).
    s = connect(sock)
    s.sendall(packet(b"O", struct.pack(">III", 2, SMFIF_SETSYMLIST, 0x7F)))
    cmd, data = read_packet(s)
    version, act, flags = struct.unpack(">III", data[:12])
    check((cmd, version, act, data[12:]) == (b"O", 2, 0, b"") and not flags & SMFIP_NOCONNECT,
          f"version 2 MTA: version 2, no symbol list, connect step kept ({version}, 0x{act:x}, 0x{flags:x})")
    s.close()


def macro_stages(sock):
    """libmilter keeps the macros of each stage and smfi_getsymval looks in the latest stage
    first (MAIL, then HELO, then CONNECT): an MTA that cannot take our symbol list sends
    {client_addr} with the connect step when so configured, and {cert_subject} with HELO."""
    s = connect(sock)
    negotiate(s, actions=0)  # no symbol lists: the MTA's default macro lists
    s.sendall(macros(b"C", **{"{client_addr}": "192.0.2.7", "j": "mx.example"}) + connect_unknown()
              + packet(b"M", b"<alice@contoso.com>\0"))
    r = read_packet(s)
    check(r == (b"c", b""), f"{{client_addr}} of the connect step attributes MAIL FROM ({r!r})")
    # HELO itself is skipped (SMFIP_NOHELO); its macros still come (Postfix sends them anyway).
    s.sendall(packet(b"A") + macros(b"C") + connect_unknown() + macros(b"H", **{"{client_addr}": "192.0.2.8"})
              + macros(b"M", i="Q2") + packet(b"M", b"<alice@contoso.com>\0"))
    r = read_packet(s)
    check(r == (b"c", b""), f"{{client_addr}} of the HELO step attributes MAIL FROM ({r!r})")
    # The MAIL step's value comes first.
    s.sendall(packet(b"A") + macros(b"M", **{"{client_addr}": "198.51.100.1"})
              + packet(b"M", b"<alice@contoso.com>\0"))
    r = read_packet(s)
    check(r == UNATTRIBUTED, f"the MAIL step's {{client_addr}} takes precedence ({r!r})")
    # A new SMTP session (QUIT_NC) starts without the last session's macros; so does a new
    # connect step (it clears the HELO and MAIL stages, as in libmilter).
    s.sendall(packet(b"A") + macros(b"M", **{"{client_addr}": "192.0.2.7"}) + packet(b"M", b"<alice@contoso.com>\0"))
    check(read_packet(s) == (b"c", b""), "the MAIL step's {client_addr} attributes")
    s.sendall(packet(b"A") + packet(b"K") + connect_unknown() + packet(b"M", b"<alice@contoso.com>\0"))
    r = read_packet(s)
    check(r == UNATTRIBUTED, f"QUIT_NC: no macro of the previous session is used ({r!r})")
    s.sendall(packet(b"A") + macros(b"C", **{"{client_addr}": "192.0.2.7"}) + connect_unknown()
              + macros(b"M", **{"{client_addr}": "198.51.100.1"}) + packet(b"M", b"<alice@contoso.com>\0")
              + packet(b"A") + connect_unknown() + packet(b"M", b"<alice@contoso.com>\0"))
    r1, r2 = read_packet(s), read_packet(s)
    check(r1 == UNATTRIBUTED and r2 == (b"c", b""),
          f"a connect step clears the MAIL stage's macros, keeps its own ({r1!r}, {r2!r})")
    s.close()


def cert_subjects(sock):
    """A certificate attributes only when the MTA verified it: Postfix sends {cert_subject}
    (the CN) for verified certificates only and no {verify}; Sendmail sends {cn_subject}, the
    whole DN in {cert_subject}, and {verify}. A DN is never split (its escaping could pass
    another attribute off as the CN)."""
    s = connect(sock)
    negotiate(s)
    dn = "/C=US/O=Contoso/OU=Mail/CN=relay.contoso.com/"
    cases = [
        ({"{cert_subject}": "relay.contoso.com"}, True, "Postfix: the CN"),
        ({"{cert_subject}": dn, "{cn_subject}": "relay.contoso.com", "{verify}": "OK"}, True, "Sendmail, verified"),
        ({"{cert_subject}": dn, "{cn_subject}": "relay.contoso.com", "{verify}": "FAIL"}, False, "Sendmail, not verified"),
        ({"{cert_subject}": dn, "{cn_subject}": "relay.contoso.com", "{verify}": "NO"}, False, "Sendmail, no certificate"),
        ({"{cert_subject}": dn, "{verify}": "OK"}, False, "a DN without {cn_subject} is not split"),
        ({"{cert_subject}": "CN=relay.contoso.com,O=Contoso"}, False, "an RFC 2253 DN is not split"),
        ({"{cert_subject}": "OU=x\\, CN=relay.contoso.com,O=Evil"}, False, "an escaped comma passes nothing off"),
        ({"{cert_subject}": "other.example"}, False, "no connector for that name"),
    ]
    for macros_, attributes, what in cases:
        s.sendall(macros(b"M", **macros_, **{"{client_addr}": "198.51.100.1"})
                  + packet(b"M", b"<alice@contoso.com>\0"))
        r = read_packet(s)
        want = (b"c", b"") if attributes else UNATTRIBUTED
        check(r == want, f"{what}: {macros_} ({r!r})")
        s.sendall(packet(b"A"))
    s.close()


def slow_reader(sock):
    """An MTA that sends commands but never reads the replies must not stall the others."""
    hog = connect(sock)
    hog.setblocking(False)
    data = packet(b"H", b"x\0") * 100000  # a reply each (nothing negotiated)
    sent, idle_since = 0, None
    start = time.monotonic()
    while time.monotonic() - start < 3:
        try:
            n = hog.send(data[sent % len(data):][:65536])
            sent += n
            idle_since = None
        except BlockingIOError:
            if idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 0.3:
                break
            time.sleep(0.01)
    s = connect(sock)
    s.settimeout(3)
    t0 = time.monotonic()
    try:
        negotiate(s)
        s.sendall(mail("<alice@contoso.com>"))
        r = read_packet(s)
    except (socket.timeout, OSError) as e:
        r = repr(e)
    check(r == (b"c", b""), f"a peer that never reads stalls no other session "
          f"({r!r} after {time.monotonic() - t0:.1f} s; {sent} bytes sent by the peer)")
    s.close()
    hog.close()


def large_packet(sock):
    """Any packet up to the 1 MiB limit is taken (the buffer grows to fit it)."""
    s = connect(sock)
    s.sendall(packet(b"B", b"x" * (1024 * 1024 - 1)))  # nothing negotiated: a reply is due
    r = read_packet(s)
    check(r == (b"c", b""), f"a packet of the largest length allowed (1 MiB) is answered ({r!r})")
    s.close()


def fd_exhaustion(binary, policy, d, env):
    """Out of file descriptors, accept fails: the loop must not spin on the listening socket,
    and serves again once descriptors are free."""
    sock = f"{d}/fd.sock"
    limit = 24

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.Popen([binary, "-E", policy, f"unix:{sock}"], stderr=open(f"{d}/fd.log", "w"),
                            env=env, preexec_fn=low_limit)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        clients = [connect(sock) for _ in range(limit + 8)]
        time.sleep(0.3)
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        spent = cpu_seconds(proc.pid) - before
        check(spent < 0.3, f"out of descriptors: the loop waits instead of spinning ({spent:.2f} s CPU in 1 s)")
        for c in clients:
            c.close()
        time.sleep(0.2)
        s = connect(sock)
        cmd = negotiate(s)[0]
        check(cmd == b"O", "descriptors free again: new connections served")
        s.close()
    finally:
        rc = stop(proc)
    check(rc == 0, f"the descriptor-starved milter exits cleanly (rc={rc})")
    if rc != 0:
        print(open(f"{d}/fd.log").read())


def over_tcp(binary, policy, d, env):
    """The same conversation over TCP (inet:), where the loop sets TCP_NODELAY and acknowledges
    every read at once."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([binary, "-E", policy, f"inet:{port}@127.0.0.1"],
                            stderr=open(f"{d}/tcp.log", "w"), env=env)
    try:
        s = None
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        check(s is not None, "inet: listening")
        if s is None:
            return
        with s:
            cmd = negotiate(s)[0]
            s.sendall(mail("<alice@contoso.com>"))
            r1 = read_packet(s)
            s.sendall(message_rest())
            r2 = read_packet(s)
        check(cmd == b"O" and r1 == (b"c", b"") and r2 == (b"c", b""), "inet: a whole message served")
    finally:
        rc = stop(proc)
    check(rc == 0, f"the inet milter exits cleanly (rc={rc})")
    if rc != 0:
        print(open(f"{d}/tcp.log").read())


def stop(proc):
    """SIGTERM, then the exit code (None when it had to be killed)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def closed(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, socket.timeout):
        return False


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    d = tempfile.mkdtemp(prefix="og-milter-proto-")
    sock, policy, log = f"{d}/milter.sock", f"{d}/policy.toml", f"{d}/milter.log"
    with open(policy, "w") as f:
        f.write(POLICY)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    proc = subprocess.Popen([sys.argv[1], "-E", policy, f"unix:{sock}"], stderr=open(log, "w"), env=env)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)

        # Negotiation: the steps and macros outguard asks for.
        s = connect(sock)
        cmd, version, act, flags, lists = negotiate(s)
        check(cmd == b"O" and version == 6, "negotiation answered, version 6")
        check(act == SMFIF_SETSYMLIST and b"{client_addr}" in lists, "asks for {client_addr} at MAIL FROM")
        check(flags & SMFIP_NOCONNECT and flags & SMFIP_NR_HDR and flags & SMFIP_NR_RCPT,
              "skips connect, no replies for headers and RCPT")

        # A registered sender from the tenant's connector: continue, then counted at the end.
        s.sendall(mail("<alice@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "registered sender: continue")
        s.sendall(message_rest())
        check(read_packet(s) == (b"c", b""), "end of message: continue")

        # Unregistered: one allowed, then the exact 5.7.750 reply. Sent byte by byte.
        for i in range(2):
            for b in mail("<x@unregistered.example>"):
                s.send(bytes([b]))
            r = read_packet(s)
            if i == 0:
                check(r == (b"c", b""), "first unregistered message within the allowance")
                s.sendall(message_rest())
                read_packet(s)
            else:
                check(r == (b"y", b"550 5.7.750 Service unavailable. Client blocked from sending "
                                  b"from unregistered domains\0"),
                      f"allowance spent: exact 5.7.750 reply ({r!r})")
        # The registered domain still flows; an abort in between is harmless.
        s.sendall(packet(b"A") + mail("<alice@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "registered domain still accepted after the block")
        # A new SMTP session on the same connection (QUIT_NC), then QUIT.
        s.sendall(packet(b"K") + mail("<bob@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "QUIT_NC: the next session is served")
        s.sendall(packet(b"Q"))
        check(closed(s), "QUIT closes the connection")

        # An MTA without symbol lists: the connect step carries the address.
        s = connect(sock)
        cmd, version, act, flags, lists = negotiate(s, actions=0)
        check(act == 0 and not flags & SMFIP_NOCONNECT and lists == b"", "no symbol lists: connect step kept")
        s.sendall(packet(b"C", b"client.example\0" + b"4" + struct.pack(">H", 25) + b"192.0.2.9\0"))
        s.sendall(packet(b"M", b"<carol@contoso.com>\0"))
        r = read_packet(s)
        check(r == (b"c", b""), f"attributed by the connect address ({r!r})")
        s.close()

        # Malformed input closes that connection only.
        bad = {
            "zero length": b"\0\0\0\0",
            "length over 1 MiB": struct.pack(">I", 2 * 1024 * 1024) + b"M",
            "unknown command": packet(b"Z", b"x"),
            "unterminated sender": packet(b"M", b"<alice@contoso.com>"),
            "negotiation too short": packet(b"O", b"\0\0\0\6"),
        }
        for what, data in bad.items():
            s = connect(sock)
            s.sendall(data)
            check(closed(s), f"{what}: connection closed")
        # Odd but harmless: tolerated, connection kept.
        s = connect(sock)
        negotiate(s)
        s.sendall(packet(b"L", b"no-terminator") + packet(b"D") + packet(b"C", b"h")
                  + mail("<alice@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "unterminated header, empty macro and connect: tolerated")
        # A truncated packet, then the MTA goes away.
        s.sendall(packet(b"M", b"<alice@contoso.com>\0")[:7])
        s.close()

        negotiation_limits(sock)
        macro_stages(sock)
        cert_subjects(sock)
        large_packet(sock)
        slow_reader(sock)

        s = connect(sock)
        negotiate(s)
        s.sendall(mail("<alice@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "still serving after all of that")
        s.close()
    finally:
        rc = stop(proc)
    check(rc == 0, f"milter exits cleanly on SIGTERM (rc={rc}; sanitizers report here)")
    fd_exhaustion(sys.argv[1], policy, d, env)
    over_tcp(sys.argv[1], policy, d, env)
    if FAILED:
        print(open(log).read())
    else:
        shutil.rmtree(d, ignore_errors=True)
    print(f"milter protocol: {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
