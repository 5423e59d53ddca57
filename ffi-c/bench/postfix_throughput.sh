#!/usr/bin/env bash
# smtp-source throughput through Postfix with outguard-milter vs Postfix alone, in one run.
#
# One private Postfix on 127.0.0.1 with two smtpd listeners that share everything (queue,
# cleanup, relay to one smtp-sink) except smtpd_milters: one port with the milter, one without.
# smtp-source sends the same load to each, alternating, ROUNDS times; the ratio of messages
# per second is printed (target >= 0.9). Not part of the tests. Needs root, postfix,
# libmilter-dev and the milter: make -C ffi-c milter.
#
#   ffi-c/bench/postfix_throughput.sh [MESSAGES=2000] [SESSIONS=10] [ROUNDS=3]
#
# MILTER_OPTS=-E runs the milter's libmilter-free event loop; MILTER=BINARY measures another
# milter (ffi-c/bench/null_milter.c, built with `make -C ffi-c null-milter`, answers without
# deciding: what Postfix's side of the protocol costs by itself). SMTP_SOURCE_OPTS=-d sends
# every message of a session over one SMTP connection (default: a connection per message);
# MESSAGE_SIZE=BYTES sets the size of each message (default 1024).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
milter_bin="${MILTER:-$here/../examples/milter/outguard-milter}"  # MILTER=another milter binary to compare
messages="${1:-2000}"; sessions="${2:-10}"; rounds="${3:-3}"
[ -x "$milter_bin" ] || { echo "build the milter first: make -C ffi-c milter"; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

d="$(mktemp -d /tmp/og-bench-XXXXXX)"; chmod 755 "$d"
pids=()
cleanup() {
  postfix -c "$d/etc" stop >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$d"
}
trap cleanup EXIT

with_port="$(free_port)"; without_port="$(free_port)"; sink_port="$(free_port)"; milter_port="$(free_port)"
mkdir -p "$d/etc" "$d/spool" "$d/data"; chown postfix "$d/data"
cp /etc/postfix/master.cf "$d/etc/"; : > "$d/etc/main.cf"
cat > "$d/policy.toml" <<'EOF'
[rules.unregistered_domain]
limit = 100000000
[rules.tenant_threshold]
min_messages = 100000000
[[tenants]]
id = "contoso"
domains = ["contoso.com"]
connectors = [ { name = "loopback", ranges = ["127.0.0.0/8"] } ]
EOF

smtp-sink -u nobody 127.0.0.1:"$sink_port" 256 >/dev/null 2>&1 & pids+=($!)
# MILTER_TRANSPORT=inet|unix (default unix: no TCP, no Nagle/delayed-ACK stalls).
transport="${MILTER_TRANSPORT:-unix}"
if [ "$transport" = unix ]; then
  chmod 755 "$d"                       # smtpd runs as postfix: it must reach the socket
  milter_conn="unix:$d/milter.sock"
  "$milter_bin" ${MILTER_OPTS:-} "$d/policy.toml" "$milter_conn" 2>"$d/milter.log" & pids+=($!); milter_pid=$!
  for _ in $(seq 100); do [ -S "$d/milter.sock" ] && break; sleep 0.05; done
  chmod 666 "$d/milter.sock"
  smtpd_milter="$milter_conn"
else
  "$milter_bin" ${MILTER_OPTS:-} "$d/policy.toml" "inet:$milter_port@127.0.0.1" 2>"$d/milter.log" & pids+=($!); milter_pid=$!
  wait_port "$milter_port"
  smtpd_milter="inet:127.0.0.1:$milter_port"
fi
wait_port "$sink_port"

postconf -c "$d/etc" -e compatibility_level=3.6 myhostname=mta-test.localdomain mydestination= \
  inet_interfaces=127.0.0.1 inet_protocols=ipv4 mynetworks=127.0.0.0/8 queue_directory="$d/spool" \
  data_directory="$d/data" meta_directory=/etc/postfix maillog_file="$d/maillog" \
  maillog_file_prefixes="$d" relayhost="[127.0.0.1]:$sink_port" milter_default_action=tempfail \
  default_process_limit=200 smtpd_client_connection_count_limit=0 \
  smtp_destination_concurrency_limit=50 default_destination_concurrency_limit=50
postconf -c "$d/etc" -F '*/*/chroot = n'
postconf -c "$d/etc" -M# smtp/inet
postconf -c "$d/etc" -Me "127.0.0.1:$with_port/inet=127.0.0.1:$with_port inet n - n - - smtpd -o smtpd_milters=$smtpd_milter"
postconf -c "$d/etc" -Me "127.0.0.1:$without_port/inet=127.0.0.1:$without_port inet n - n - - smtpd -o smtpd_milters="
postfix -c "$d/etc" start >/dev/null
wait_port "$with_port"; wait_port "$without_port"

run() { # port -> seconds
  local t0 t1
  t0=$(date +%s.%N)
  smtp-source ${SMTP_SOURCE_OPTS:-} -s "$sessions" -m "$messages" -l "${MESSAGE_SIZE:-1024}" -f alice@contoso.com -t rcpt@dest.example "127.0.0.1:$1"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
run "$without_port" >/dev/null; run "$with_port" >/dev/null # warm-up
# CPU seconds (user + system) the milter process has used so far.
milter_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$milter_pid/stat"; }
tw=0; to=0; mcpu=0; ratios=()
for r in $(seq "$rounds"); do
  a=$(run "$without_port")
  c0=$(milter_cpu); b=$(run "$with_port"); c1=$(milter_cpu)
  mcpu=$(echo "$mcpu + $c1 - $c0" | bc -l)
  ratios+=("$(echo "$a / $b" | bc -l)")
  to=$(echo "$to + $a" | bc -l); tw=$(echo "$tw + $b" | bc -l)
  printf 'round %d: postfix alone %.0f msg/s, with outguard-milter %.0f msg/s\n' "$r" \
    "$(echo "$messages / $a" | bc -l)" "$(echo "$messages / $b" | bc -l)"
done
alone=$(echo "$rounds * $messages / $to" | bc -l)
with=$(echo "$rounds * $messages / $tw" | bc -l)
echo "machine: $(nproc) CPUs, $(uname -r); $messages messages x $rounds rounds, $sessions sessions, ${MESSAGE_SIZE:-1024} bytes each${SMTP_SOURCE_OPTS:+, smtp-source $SMTP_SOURCE_OPTS}"
printf 'postfix alone:            %8.0f msg/s\n' "$alone"
printf 'postfix + outguard-milter: %7.0f msg/s\n' "$with"
printf 'ratio:                    %8.3f (target >= 0.9)\n' "$(echo "$with / $alone" | bc -l)"
median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
printf 'median of the per-round ratios: %.3f\n' "$median"
printf 'milter process CPU: %.0f us per message (user + system, its own process only)\n' \
  "$(echo "$mcpu * 1000000 / ($rounds * $messages)" | bc -l)"
if grep -q reject "$d/milter.log"; then echo "warning: the milter rejected mail during the benchmark"; fi
