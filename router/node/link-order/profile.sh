#!/bin/bash
# Regenerates link-order/symbols.txt: the functions of `ferry` that run while a node
# starts, links to a peer and idles (first), then those that run while it moves a few
# bundles (second). build.rs hands the file to the linker (LLD's
# --symbol-ordering-file), so that these functions sit together in the binary and an
# idle node maps far fewer pages of `ferry` (docs/performance.md#idle-memory).
#
# Symbol names are v0 (.cargo/config.toml), which do not change as code changes, but
# carry per-crate disambiguators that follow the crate graph's features, which differ
# with how `ferry` is built, so each way is profiled and the names of all are kept (the
# linker skips the names a build does not have):
#   - `cargo run --release --bin ferry` (the README's command; whole workspace),
#   - `cargo install --path router/node` (the ferry-node package alone),
#   - `cargo bench -p ferry-node` (the benchmarks, with dev-dependencies).
# Regenerate after a dependency or toolchain update, and commit the file.
#
# Needs valgrind (callgrind), curl and python3. Takes about 7 minutes:
#   router/node/link-order/profile.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
cd "$ROOT"
D=$(mktemp -d)
A=
B=
trap 'kill $A $B 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# profile BIN OUT: start-up, link and idle into OUT.1, bundles into OUT.2.
profile() {
  local bin=$1 out=$2 w
  w=$(mktemp -d -p "$D")
  local pa qa pb qb ida idb share
  pa=$(port); qa=$(port); pb=$(port); qb=$(port)
  ida=$("$bin" init --home "$w/a" --listen 127.0.0.1:$qa --api 127.0.0.1:$pa --no-discovery \
    --realm profile --routing epidemic)
  share=$("$bin" realm --home "$w/a" profile)
  idb=$("$bin" init --home "$w/b" --listen 127.0.0.1:$qb --api 127.0.0.1:$pb --no-discovery \
    --realm "$share" --routing epidemic --peer "$ida@127.0.0.1:$qa")
  # Both nodes under callgrind: A accepts the QUIC connection, B dials it.
  vg() { RUST_LOG=warn exec valgrind --tool=callgrind --demangle=no --dump-instr=no \
    --compress-strings=no --compress-pos=no --callgrind-out-file="$w/cg.$1.%p" \
    "$bin" run --home "$w/$1" >/dev/null 2>"$w/vg.$1.log"; }
  vg a & A=$!
  vg b & B=$!
  for _ in $(seq 1 1200); do
    if curl -sf "http://127.0.0.1:$pa/v1/status" | grep -Eq '"links":1[,}]'; then break; fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$pb/v1/status" | grep -Eq '"links":1[,}]' || { echo "no link" >&2; exit 1; }
  sleep 5
  callgrind_control -d "$A" >/dev/null 2>&1
  callgrind_control -d "$B" >/dev/null 2>&1
  for i in $(seq 1 20); do
    echo "bundle $i" | "$bin" send --home "$w/a" --to "$idb" - >/dev/null
    echo "bundle $i" | "$bin" send --home "$w/b" --to "$ida" - >/dev/null
  done
  "$bin" recv --home "$w/b" --wait 60 --out "$w/got-b" >/dev/null 2>&1
  "$bin" recv --home "$w/a" --wait 60 --out "$w/got-a" >/dev/null 2>&1
  kill -TERM $A $B || true
  wait $A $B || true
  A=; B=
  # Function names of the ferry object, each once; callgrind marks recursion depth
  # with 'N suffixes, which are not part of symbol names.
  names() {
    awk '/^ob=/{ob=substr($0,4)} /^fn=/{ if (ob ~ /\/ferry[.0-9]*$/) { n=substr($0,4); sub(/'"'"'[0-9]+$/, "", n); print n } }' "$@"
  }
  names "$w"/cg.a.*.1 "$w"/cg.b.*.1 > "$out.1"
  names $(ls "$w"/cg.a.* "$w"/cg.b.* | grep -v '\.1$') > "$out.2"
  nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ {print $3}' >> "$D/defined"
}

n=0
for build in "cargo build --release --bin ferry" \
             "cargo build --release -p ferry-node --bin ferry" \
             "cargo bench -p ferry-node --no-run"; do
  n=$((n + 1))
  $build
  cp "${CARGO_TARGET_DIR:-target}/release/ferry" "$D/ferry.$n"
  profile "$D/ferry.$n" "$D/names.$n"
done
# The start-up and idle functions of every build first, then the rest.
cat "$D"/names.*.1 "$D"/names.*.2 | awk '!seen[$0]++' > "$D/order"
awk 'NR==FNR{d[$1]=1; next} ($0 in d)' "$D/defined" "$D/order" > "$HERE/symbols.txt"
echo "$(wc -l < "$HERE/symbols.txt") symbols written to $HERE/symbols.txt"
