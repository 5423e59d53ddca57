#!/usr/bin/env bash
# End to end with a real Exim: builds liboutguard (release), the Exim ${dlfunc} library and the
# admin tool of ffi-c/examples/exim, then runs ffi-c/tests/exim_e2e.sh. Under CI=true it always
# runs (installing what it needs); elsewhere it is skipped when not run as root.
#
# Needs (Debian 12, as root): build-essential python3, and (installed by the test when missing)
# the runtime libraries libmariadb3 libidn12 libspf2-2; exim4-daemon-heavy exim4-base
# exim4-config are downloaded and unpacked (never installed: they conflict with Postfix).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    echo "exim-test: must run as root under CI" >&2
    exit 1
  fi
  echo "exim-test: skipped (needs root to run an Exim daemon); 0 passed, 0 failed"
  exit 0
fi
cd "$root"
cargo build --release -p outguard-ffi
target_dir="${CARGO_TARGET_DIR:-$root/target}"
build="$target_dir/exim-example"
mkdir -p "$build"
make -s -C ffi-c/examples/exim LIB_A="$target_dir/release/liboutguard.a" OUT="$build"
exec "$here/tests/exim_e2e.sh" "$build"
