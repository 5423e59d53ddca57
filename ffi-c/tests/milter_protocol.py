#!/usr/bin/env python3
"""The event-loop transport of outguard-milter (-E), spoken to directly: the milter protocol as
Postfix and Sendmail send it, in pieces and all at once, and malformed input.

Usage: milter_protocol.py MILTER_BINARY (the sanitizer build: ffi-c/examples/milter/
outguard-milter-asan). Every malformed packet must close only its own connection: the milter
keeps serving, and exits cleanly (and leak-free under ASan) on SIGTERM.
"""

import os
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
connectors = [ { name = "office", ranges = ["192.0.2.0/24"] } ]
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

        s = connect(sock)
        negotiate(s)
        s.sendall(mail("<alice@contoso.com>"))
        check(read_packet(s) == (b"c", b""), "still serving after all of that")
        s.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
    check(rc == 0, f"milter exits cleanly on SIGTERM (rc={rc}; sanitizers report here)")
    if FAILED:
        print(open(log).read())
    print(f"milter protocol: {len(FAILED)} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
