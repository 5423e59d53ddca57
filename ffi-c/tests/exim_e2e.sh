#!/usr/bin/env bash
# A real Exim 4.96 (Debian's exim4-daemon-heavy, unpacked into target/, not installed) on a
# loopback port, with the outguard ${dlfunc} of ffi-c/examples/exim checking at MAIL and
# recording at DATA over one shared state file. Exim forks a process per SMTP connection, so
# the unregistered-domain allowance is only spent across connections because the state is
# shared: after `limit` messages from unregistered domains, each in a connection of its own,
# the tenant is refused with the exact 5.7.750 reply; its registered domain still delivers.
#
# Usage: exim_e2e.sh BUILD_DIR   (BUILD_DIR holds outguard_exim.so and outguard-shared;
# ffi-c/exim-test.sh builds them and calls this). Run as root.
set -euo pipefail
build="$(cd "$1" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAILED: $*"; }

work=""
pgid=""
cleanup() {
  local rc=$?
  if [ -n "$pgid" ]; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 -- "-$pgid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  if [ $rc -ne 0 ] && [ -n "$work" ] && [ -d "$work/log" ]; then
    echo "--- exim logs"; cat "$work"/log/* 2>/dev/null | tail -n 40 || true
  fi
  [ -n "$work" ] && rm -rf "$work"
  if [ $rc -ne 0 ] && [ $failed -eq 0 ]; then echo "exim e2e: $passed passed, 1 failed"; fi
}
trap cleanup EXIT

# --- Exim, unpacked ---------------------------------------------------------------------
exim_root="$target_dir/exim-unpacked"
exim="$exim_root/usr/sbin/exim4"
if [ ! -x "$exim" ]; then
  mkdir -p "$exim_root/debs"
  ( cd "$exim_root/debs"
    pkgs="exim4-daemon-heavy exim4-base exim4-config"
    apt-get download $pkgs 2>/dev/null || { apt-get update -qq && apt-get download $pkgs; }
    for deb in *.deb; do dpkg-deb -x "$deb" "$exim_root"; done )
fi
if ldd "$exim" | grep -q 'not found'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libmariadb3 libidn12 libspf2-2 >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends libmariadb3 libidn12 libspf2-2 >/dev/null; }
fi
missing="$(ldd "$exim" | grep 'not found' || true)"
[ -z "$missing" ] || { echo "exim still misses libraries: $missing"; exit 1; }
getent passwd Debian-exim >/dev/null \
  || useradd --system --user-group --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin Debian-exim
version="$("$exim" -C /dev/null -bV 2>&1 || true)"
grep -q Expand_dlfunc <<<"$version" || { echo "this exim has no Expand_dlfunc: $version"; exit 1; }
ok "exim $(sed -n 's/^Exim version \([^ ]*\).*/\1/p' <<<"$version") unpacked, with Expand_dlfunc"

# --- policy, image, state ---------------------------------------------------------------
work="$(mktemp -d /tmp/outguard-exim.XXXXXX)"
chmod 755 "$work"
mkdir -p "$work/spool" "$work/log" "$work/mail"
chown Debian-exim:Debian-exim "$work/spool" "$work/log" "$work/mail"
cp "$build/outguard_exim.so" "$work/"
limit=5
cat >"$work/policy.toml" <<EOF
[rules.unregistered_domain]
limit = $limit
block = "manual"

[[tenants]]
id = "contoso"
domains = ["contoso.com"]

[[tenants]]
id = "fabrikam"
domains = ["fabrikam.com"]
EOF
"$build/outguard-shared" compile "$work/policy.toml" "$work/policy.img"
"$build/outguard-shared" create "$work/policy.img" "$work/state"
chown Debian-exim:Debian-exim "$work/state"
ok "policy compiled to an image; shared state file created"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
og="\${dlfunc{$work/outguard_exim.so}{outguard_check}{$work/policy.img}{$work/state}{\$sender_address}{\$authenticated_id}{\$sender_host_address}"
cat >"$work/exim.conf" <<EOF
exim_path = $exim
primary_hostname = mta-test.localdomain
spool_directory = $work/spool
log_file_path = $work/log/%slog
pid_file_path = $work/exim.pid
local_interfaces = 127.0.0.1
daemon_smtp_ports = $port
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
auth_advertise_hosts = *
deliver_drop_privilege = true
keep_environment =
never_users = root
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl

acl_mail:
  deny
    set acl_m_og = $og{check}}
    condition = \${if !eq{\$acl_m_og}{accept}}
    message = \$acl_m_og
  accept

acl_rcpt:
  accept
    authenticated = *
  deny
    message = relay not permitted

acl_data:
  warn
    set acl_m_ogr = $og{record}{clean}{\$recipients_count}}
    add_header = X-Outguard: \$acl_m_ogr
  accept

begin routers

everything:
  driver = accept
  transport = to_file

begin transports

to_file:
  driver = appendfile
  file = $work/mail/delivered
  user = Debian-exim
  envelope_to_add
  return_path_add

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_condition = \${if eq{\$auth3}{secret}}
  server_set_id = \$auth2
EOF
chmod 644 "$work/exim.conf"
"$exim" -C "$work/exim.conf" -bV >/dev/null
setsid "$exim" -C "$work/exim.conf" -bdf -oX "$port" </dev/null >"$work/log/daemon.out" 2>&1 &
pgid=$!
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
ok "exim daemon listening on 127.0.0.1:$port (process group $pgid)"

# --- traffic: one SMTP connection per message -------------------------------------------
python3 - "$port" "$limit" >"$work/smtp.out" <<'PY' || { cat "$work/smtp.out"; fail "SMTP conversation"; }
import smtplib, sys
port, limit = int(sys.argv[1]), int(sys.argv[2])
R750 = b"5.7.750 Service unavailable. Client blocked from sending from unregistered domains"

def send(user, sender, n):
    s = smtplib.SMTP("127.0.0.1", port, timeout=20)
    try:
        s.login(user, "secret")
        body = f"From: {sender}\r\nTo: bob@example.net\r\nSubject: outguard e2e {n}\r\n\r\nhello {n}\r\n"
        s.sendmail(sender, ["bob@example.net"], body)
        return (250, b"")
    except smtplib.SMTPSenderRefused as e:
        return (e.smtp_code, e.smtp_error)
    finally:
        try:
            s.quit()
        except Exception:
            pass

def reassembled(err):
    # Exim splits ACL messages over 75 characters into several "550-5.7.750 ..." lines
    # (acl.c, string_split_message); every line repeats the enhanced code.
    lines = err.split(b"\n")
    code = lines[0].split(b" ", 1)[0]
    if not all(l.startswith(code + b" ") for l in lines):
        return err
    return code + b" " + b" ".join(l[len(code) + 1:] for l in lines)

bad = 0
for i in range(limit):
    r = send("alice@contoso.com", f"news{i}@unregistered.example", i)
    print("unregistered", i, r)
    bad += r[0] != 250
r = send("alice@contoso.com", "news@unregistered.example", "over")
print("over the allowance", r)
r = (r[0], reassembled(r[1]))
print("over the allowance, reassembled", r)
if r != (550, R750):
    print("expected", (550, R750)); bad += 1
r = send("alice@contoso.com", "alice@contoso.com", "registered")
print("registered domain", r)
bad += r[0] != 250
r = send("carol@fabrikam.com", "carol@fabrikam.com", "other tenant")
print("other tenant", r)
bad += r[0] != 250
sys.exit(1 if bad else 0)
PY
cat "$work/smtp.out"
r750="550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
if grep -q "over the allowance, reassembled (550, b'5.7.750 Service unavailable. Client blocked from sending from unregistered domains')" "$work/smtp.out"; then
  ok "after $limit unregistered messages in $limit separate connections: 550 5.7.750 (exact reply, wrapped by Exim)"
else
  fail "no exact 5.7.750 refusal after the allowance"
fi
if grep -qF "rejected MAIL <news@unregistered.example>: $r750" "$work"/log/mainlog; then
  ok "exim logs the exact one-line reply: $r750"
else
  fail "exim's log lacks the exact reply"
fi
grep -q "registered domain (250" "$work/smtp.out" && ok "the tenant's registered domain still goes out" \
  || fail "registered domain refused"
grep -q "other tenant (250" "$work/smtp.out" && ok "another tenant is not affected" \
  || fail "other tenant refused"

# --- deliveries -------------------------------------------------------------------------
want=$((limit + 2))
for _ in $(seq 100); do
  n="$(grep -c '^Subject: outguard e2e' "$work/mail/delivered" 2>/dev/null || true)"
  [ "${n:-0}" -ge "$want" ] && break
  sleep 0.1
done
n="$(grep -c '^Subject: outguard e2e' "$work/mail/delivered" 2>/dev/null || true)"
if [ "${n:-0}" -eq "$want" ]; then ok "$n messages delivered (the refused one is not among them)"; else fail "delivered ${n:-0}, expected $want"; fi
grep -q '^Subject: outguard e2e over' "$work/mail/delivered" 2>/dev/null && fail "the refused message was delivered"
pids="$(sed -n 's/^X-Outguard: recorded (pid \([0-9]*\))$/\1/p' "$work/mail/delivered" | sort -u | wc -l)"
if [ "$pids" -ge "$limit" ]; then ok "recorded at DATA by $pids different Exim processes (one per connection)"; else fail "recorded by $pids processes only"; fi
status="$("$build/outguard-shared" status "" "$work/state" contoso)"
echo "$status"
case "$status" in
  *"unregistered $limit/$limit (blocked: 5.7.750)"*) ok "the shared state holds the count and the block" ;;
  *) fail "unexpected state: $status" ;;
esac

echo
echo "exim e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
