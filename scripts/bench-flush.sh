#!/usr/bin/env bash
# `mailsend outbox flush` of N queued messages (one session, pipelined
# across messages) against N whole-process sends (one session each, what a
# queue worked by a shell loop costs), same sink, same run.
#
# Each message goes over STARTTLS + AUTH PLAIN with a verified certificate
# to the local sink (examples/smtp_sink.rs), which counts deliveries.
#
# Usage: scripts/bench-flush.sh
#   BENCH_MESSAGES=1000  messages per method
#   MAILSEND_BIN=path    time this mailsend binary instead of building one
# Output: a table on stdout and target/bench/flush.md.
# Traffic goes to 127.0.0.1 only; the recipient is in example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${BENCH_MESSAGES:-1000}
OUT=$ROOT/target/bench
PASS=bench-password
export SINK_PASSWORD=$PASS
MAILSEND_OVERRIDE=${MAILSEND_BIN:-}
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' || true)
unset SSL_CERT_FILE SSL_CERT_DIR

say() { printf '== %s\n' "$*" >&2; }

cargo build --release --quiet --example smtp_sink
if [[ -n $MAILSEND_OVERRIDE ]]; then
  MAILSEND=$(realpath "$MAILSEND_OVERRIDE")
else
  cargo build --release --quiet
  MAILSEND=$ROOT/target/release/mailsend
fi
SINK=$ROOT/target/release/examples/smtp_sink

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench-flush.XXXXXX")
SINK_PID=
cleanup() {
  [[ -n $SINK_PID ]] && { kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; }
  cd "$ROOT" && rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME
mkdir -p "$HOME/.config/mailsend"
: >"$HOME/.config/mailsend/config.toml"

SINK_DIR=$WORK "$SINK" >sink.out 2>sink.log &
SINK_PID=$!
for _ in $(seq 100); do grep -q '^CA=' sink.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/^PORT=//p' sink.out)
CA=$(sed -n 's/^CA=//p' sink.out)
[[ -n $PORT && -f $CA ]] || { echo "sink did not start" >&2; exit 1; }
# A port where nothing listens, to queue messages.
DOWN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

export MAILSEND_HOST=127.0.0.1 MAILSEND_CA_FILE=$CA MAILSEND_USER=bench@example.com MAILSEND_PASSWORD=$PASS
delivered() { awk -F'delivered=' '/tls=true auth=true/ { split($2, a, " "); n += a[1] } END { print n + 0 }' sink.log; }
ms() { date +%s%3N; }

say "queueing $N messages (server down)"
for i in $(seq "$N"); do
  MAILSEND_PORT=$DOWN "$MAILSEND" --queue --to a@example.com --subject "queued $i" --body "message $i" 2>/dev/null
done

say "outbox flush of $N messages"
before=$(delivered)
t0=$(ms)
MAILSEND_PORT=$PORT "$MAILSEND" outbox flush --all
t1=$(ms)
sleep 0.5
flushed=$(($(delivered) - before))
flush_ms=$((t1 - t0))

say "$N processes, one message each"
before=$(delivered)
t0=$(ms)
for i in $(seq "$N"); do
  MAILSEND_PORT=$PORT "$MAILSEND" --to a@example.com --subject "loop $i" --body "message $i"
done
t1=$(ms)
sleep 0.5
looped=$(($(delivered) - before))
loop_ms=$((t1 - t0))

ratio=$(awk -v a="$loop_ms" -v b="$flush_ms" 'BEGIN { printf "%.1f", a / b }')
{
  echo "# outbox flush vs one process per message ($N messages, STARTTLS + AUTH PLAIN, verified)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| method | delivered | total ms | ms per message |"
  echo "|---|---:|---:|---:|"
  echo "| mailsend outbox flush (one session) | $flushed | $flush_ms | $(awk -v t="$flush_ms" -v n="$N" 'BEGIN { printf "%.2f", t / n }') |"
  echo "| mailsend per message (a process each) | $looped | $loop_ms | $(awk -v t="$loop_ms" -v n="$N" 'BEGIN { printf "%.2f", t / n }') |"
  echo
  echo "flush is ${ratio}x faster than a process per message"
} | tee "$OUT/flush.md"
[[ $flushed == "$N" && $looped == "$N" ]] || { echo "not every message was delivered" >&2; exit 1; }
