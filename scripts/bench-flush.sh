#!/usr/bin/env bash
# `mailsend outbox flush` of N queued messages (one session, pipelined
# across messages) against N whole-process sends (one session each, what a
# queue worked by a shell loop costs), same sink, same run; then the same
# over a slow link (a delay proxy), with peers, in round trips per message.
#
# Each mailsend/msmtp message goes over STARTTLS + AUTH PLAIN with a
# verified certificate to the local sink (examples/smtp_sink.rs, PIPELINING
# offered), which counts deliveries.
#
# The slow link: scripts/delay-proxy.py between client and server holds
# every chunk BENCH_DELAY_MS (default 25 ms) each way, so a round trip (RTT)
# costs 2 x that (50 ms), and a new connection reaches the server 1.5 RTT
# after connect() (as a TCP handshake would). There:
#   - `mailsend outbox flush` of BENCH_SLOW_MESSAGES (200) queued messages;
#   - a process per message, mailsend and msmtp, BENCH_SLOW_LOOP (20) each
#     (their figures per message stand for any count);
#   - Postfix's smtp-source (no PIPELINING; no TLS, so against Postfix's
#     plain smtp-sink, PIPELINING offered), one session for all messages
#     (-d) and a connection per message, with `mailsend outbox flush
#     --tls none` against the same smtp-sink for a like-for-like row.
# "RTT per message" is wall time / (messages x RTT): a pipelined session
# approaches 1 (each message's content goes in the same write as the next
# one's envelope); one round trip per command would be 4 (MAIL, RCPT,
# DATA, the content). The proxy logs every chunk; `delay-proxy.py
# --analyse` counts the round trips the client waited for on the wire.
#
# Usage: scripts/bench-flush.sh
#   BENCH_LINK=both         local | slow | both
#   BENCH_MESSAGES=1000     messages per method on loopback
#   BENCH_DELAY_MS=25       one-way delay of the slow link
#   BENCH_SLOW_MESSAGES=200 messages flushed over the slow link
#   BENCH_SLOW_LOOP=20      messages sent a process each over the slow link
#   MAILSEND_BIN=path       time this mailsend binary instead of building one
#   TMPDIR=/dev/shm         put the outbox on tmpfs (fsync costs nothing):
#                           separates the disk's share from the link's
# Output: tables on stdout, target/bench/flush.md (loopback) and
# target/bench/flush-slow.md (slow link), the proxies' chunk logs
# target/bench/proxy-*.log.
# Needs python3; msmtp and Postfix's smtp-source/smtp-sink rows are skipped
# when those are not installed (apt-get install msmtp postfix).
# Traffic goes to 127.0.0.1 only; recipients are in example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LINK=${BENCH_LINK:-both}
N=${BENCH_MESSAGES:-1000}
DELAY=${BENCH_DELAY_MS:-25}
NS=${BENCH_SLOW_MESSAGES:-200}
NL=${BENCH_SLOW_LOOP:-20}
OUT=$ROOT/target/bench
PASS=bench-password
export SINK_PASSWORD=$PASS
MAILSEND_OVERRIDE=${MAILSEND_BIN:-}
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' || true)
unset SSL_CERT_FILE SSL_CERT_DIR
case $LINK in local | slow | both) ;; *) echo "BENCH_LINK must be local, slow or both" >&2; exit 64 ;; esac

say() { printf '== %s\n' "$*" >&2; }
warn() { printf 'bench-flush: %s\n' "$*" >&2; }

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
build_bench_tools

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench-flush.XXXXXX")
PIDS=() # everything started here, ended by pid
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  cd "$ROOT" && rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME
mkdir -p "$HOME/.config/mailsend"
: >"$HOME/.config/mailsend/config.toml"

SINK_DIR=$WORK "$SINK" >sink.out 2>sink.log &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^CA=' sink.out 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/^PORT=//p' sink.out)
CA=$(sed -n 's/^CA=//p' sink.out)
[[ -n $PORT && -f $CA ]] || { echo "sink did not start" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A port where nothing listens, to queue messages.
DOWN=$(free_port)

export MAILSEND_HOST=127.0.0.1 MAILSEND_CA_FILE=$CA MAILSEND_USER=bench@example.com MAILSEND_PASSWORD=$PASS
delivered() { awk -F'delivered=' '/tls=true auth=true/ { split($2, a, " "); n += a[1] } END { print n + 0 }' sink.log; }
sessions() { grep -c 'tls=true auth=true' sink.log || true; }
ms() { date +%s%3N; }
# The outbox fsyncs each entry's attempt record and removal, in the gap
# between two round trips: its disk matters as much as the link. One line:
# the file system under $HOME and the median of 20 file + directory fsyncs.
disk() {
  python3 "$ROOT/scripts/fsync-probe.py" "$HOME"
}
disk_line() { echo "outbox on $(df -T "$HOME" | awk 'NR == 2 { print $2 }') ($WORK), file + directory fsync just before the flush: $(disk)"; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f, a / b }'; }

# Queues $1 messages for a@example.com while the server is down; extra
# environment (e.g. MAILSEND_TLS=none) comes from the caller.
queue() {
  local i
  for i in $(seq "$1"); do
    MAILSEND_PORT=$DOWN "$MAILSEND" --queue --to a@example.com --subject "queued $i" --body "message $i" 2>/dev/null
  done
  local queued
  queued=$("$MAILSEND" outbox list | grep -c . || true)
  [[ $queued == "$1" ]] || { warn "queued $queued messages, wanted $1"; exit 1; }
}

# --- loopback ----------------------------------------------------------

bench_local() {
  say "queueing $N messages (server down)"
  queue "$N"

  local disk_now
  disk_now=$(disk_line)
  say "outbox flush of $N messages"
  local before t0 t1
  before=$(delivered)
  t0=$(ms)
  MAILSEND_PORT=$PORT "$MAILSEND" outbox flush --all
  t1=$(ms)
  sleep 0.5
  local flushed=$(($(delivered) - before)) flush_ms=$((t1 - t0))

  say "$N processes, one message each"
  before=$(delivered)
  t0=$(ms)
  for i in $(seq "$N"); do
    MAILSEND_PORT=$PORT "$MAILSEND" --to a@example.com --subject "loop $i" --body "message $i"
  done
  t1=$(ms)
  sleep 0.5
  local looped=$(($(delivered) - before)) loop_ms=$((t1 - t0))

  local ratio
  ratio=$(div "$loop_ms" "$flush_ms" %.1f)
  {
    echo "# outbox flush vs one process per message ($N messages, STARTTLS + AUTH PLAIN, verified)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $disk_now"
    echo
    echo "| method | delivered | total ms | ms per message |"
    echo "|---|---:|---:|---:|"
    echo "| mailsend outbox flush (one session) | $flushed | $flush_ms | $(div "$flush_ms" "$N") |"
    echo "| mailsend per message (a process each) | $looped | $loop_ms | $(div "$loop_ms" "$N") |"
    echo
    echo "flush is ${ratio}x faster than a process per message"
  } | tee "$OUT/flush.md"
  [[ $flushed == "$N" && $looped == "$N" ]] || { warn "not every message was delivered"; exit 1; }
}

# --- slow link ---------------------------------------------------------

# Starts a delay proxy named $1 in front of port $2; sets PROXY_PORT.
start_proxy() {
  local name=$1 upstream=$2 i
  python3 "$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$upstream" --delay-ms "$DELAY" \
    --log "$WORK/proxy-$name.log" >"proxy-$name.out" 2>"proxy-$name.err" &
  PIDS+=($!)
  for i in $(seq 100); do grep -q '^PORT=' "proxy-$name.out" 2>/dev/null && break; sleep 0.05; done
  PROXY_PORT=$(sed -n 's/^PORT=//p' "proxy-$name.out")
  [[ -n $PROXY_PORT ]] || { cat "proxy-$name.err" >&2; warn "delay proxy $name did not start"; exit 1; }
}

# Rows of the slow-link table: name, messages, delivered, wall ms, sessions.
ROWS=()
row() { ROWS+=("$1|$2|$3|$4|$5"); }

# The round trips the client waited for, from the proxy's log of a
# one-session run: "turns" and client think time.
wire() { # $1 = proxy name
  cp "$WORK/proxy-$1.log" "$OUT/proxy-$1.log"
  python3 "$PROXY" --analyse "$WORK/proxy-$1.log" --delay-ms "$DELAY"
}

bench_slow() {
  local rtt=$((2 * DELAY)) before t0 t1 i
  say "slow link: $DELAY ms each way through scripts/delay-proxy.py"
  python3 "$PROXY" --self-test --delay-ms "$DELAY" | tee proxy-selftest.txt >&2 ||
    warn "the proxy's self-test is off: figures below are suspect"

  # Drain anything left by the loopback section, then queue.
  MAILSEND_PORT=$PORT "$MAILSEND" outbox flush --all >/dev/null 2>&1 || true
  say "queueing $NS messages (server down)"
  queue "$NS"

  local disk_now
  disk_now=$(disk_line)
  start_proxy flush "$PORT"
  say "outbox flush of $NS messages over the slow link"
  local s0
  before=$(delivered) s0=$(sessions)
  t0=$(ms)
  MAILSEND_PORT=$PROXY_PORT "$MAILSEND" outbox flush --all >flush.out
  t1=$(ms)
  sleep $((DELAY > 200 ? 2 : 1))
  row "mailsend outbox flush (one session)" "$NS" $(($(delivered) - before)) $((t1 - t0)) $(($(sessions) - s0))
  local flush_wire
  flush_wire=$(wire flush)

  start_proxy loop "$PORT"
  say "$NL mailsend processes over the slow link"
  before=$(delivered) s0=$(sessions)
  t0=$(ms)
  for i in $(seq "$NL"); do
    MAILSEND_PORT=$PROXY_PORT "$MAILSEND" --to a@example.com --subject "loop $i" --body "message $i"
  done
  t1=$(ms)
  sleep 1
  row "mailsend per message (a process each)" "$NL" $(($(delivered) - before)) $((t1 - t0)) $(($(sessions) - s0))
  local loop_wire
  loop_wire=$(wire loop | sed -n 1p)

  if command -v msmtp >/dev/null; then
    start_proxy msmtp "$PORT"
    write_msmtprc msmtprc "$PROXY_PORT" "$CA" bench@example.com
    "$MAILSEND" --to a@example.com --subject msmtp --body hello --dry-run >msg.txt
    say "$NL msmtp processes over the slow link"
    before=$(delivered) s0=$(sessions)
    t0=$(ms)
    for i in $(seq "$NL"); do msmtp -C msmtprc a@example.com <msg.txt; done
    t1=$(ms)
    sleep 1
    row "msmtp per message (a process each)" "$NL" $(($(delivered) - before)) $((t1 - t0)) $(($(sessions) - s0))
  else
    warn "skipping msmtp: not installed"
  fi

  local plain_note=
  if command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null; then
    # Postfix's test sink: plain, PIPELINING offered; -c prints running
    # counters ("mesg=N" after every message). As root it must drop to -u.
    local sp user=()
    sp=$(free_port)
    ((EUID == 0)) && user=(-u nobody)
    smtp-sink -c "${user[@]}" "127.0.0.1:$sp" 100 >smtp-sink.out 2>smtp-sink.err &
    PIDS+=($!)
    sleep 0.3
    pmesg() { tr '\r' '\n' <smtp-sink.out | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0; }

    say "queueing $NS messages for the plain server (server down)"
    # No credentials in clear: --tls none refuses them.
    plain() (
      unset MAILSEND_USER MAILSEND_PASSWORD MAILSEND_CA_FILE
      export MAILSEND_TLS=none MAILSEND_FROM=bench@example.com
      "$@"
    )
    plain queue "$NS"
    start_proxy flush-plain "$sp"
    say "outbox flush --tls none of $NS messages over the slow link (smtp-sink)"
    before=$(pmesg)
    t0=$(ms)
    MAILSEND_PORT=$PROXY_PORT plain "$MAILSEND" outbox flush --all >flush-plain.out
    t1=$(ms)
    sleep 1
    row "mailsend outbox flush --tls none (one session; smtp-sink)" "$NS" $(($(pmesg) - before)) $((t1 - t0)) 1
    local plain_wire
    plain_wire=$(wire flush-plain)

    start_proxy source "$sp"
    say "smtp-source -s 1 -d -m $NS over the slow link (one session, no PIPELINING)"
    before=$(pmesg)
    t0=$(ms)
    smtp-source -s 1 -d -m "$NS" -f bench@example.com -t a@example.com -S bench "127.0.0.1:$PROXY_PORT"
    t1=$(ms)
    sleep 1
    row "smtp-source -s 1 -d (one session, no PIPELINING; smtp-sink)" "$NS" $(($(pmesg) - before)) $((t1 - t0)) 1
    local source_wire
    source_wire=$(wire source)

    start_proxy source-conn "$sp"
    say "smtp-source -s 1 -m $NL over the slow link (a connection per message)"
    before=$(pmesg)
    t0=$(ms)
    smtp-source -s 1 -m "$NL" -f bench@example.com -t a@example.com -S bench "127.0.0.1:$PROXY_PORT"
    t1=$(ms)
    sleep 1
    row "smtp-source -s 1 (a connection per message; smtp-sink)" "$NL" $(($(pmesg) - before)) $((t1 - t0)) "$NL"
    plain_note=1
  else
    warn "skipping smtp-source: Postfix's smtp-source/smtp-sink not installed (apt-get install postfix)"
  fi

  local flush_per
  IFS='|' read -r _ _ _ flush_ms _ <<<"${ROWS[0]}"
  flush_per=$(div "$flush_ms" "$NS" %.3f)
  {
    echo "# outbox flush over a slow link: ${DELAY} ms each way (RTT $rtt ms), scripts/delay-proxy.py"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- $disk_now"
    echo "- proxy self-test: $(grep -o 'RTT min.*' proxy-selftest.txt | head -1)"
    echo "- mailsend and msmtp rows: STARTTLS + AUTH PLAIN, verified certificate, examples/smtp_sink.rs" \
      "(PIPELINING offered); smtp-sink rows: Postfix's smtp-sink, plain, PIPELINING offered"
    echo "- RTT per message = wall / (messages x $rtt ms), session set-up included;" \
      "'for $NS' = ms per message x $NS (measured for $NS-message rows, extrapolated for the others)"
    echo
    echo "| method | messages | delivered | sessions | wall ms | ms per message | RTT per message | for $NS, s | x flush time |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    local r name n got wall sess per
    for r in "${ROWS[@]}"; do
      IFS='|' read -r name n got wall sess <<<"$r"
      per=$(div "$wall" "$n" %.3f)
      echo "| $name | $n | $got | $sess | $wall | $(div "$wall" "$n" %.1f) |" \
        "$(div "$per" "$rtt") | $(awk -v p="$per" -v n="$NS" 'BEGIN { printf "%.1f", p * n / 1000 }') |" \
        "$(div "$per" "$flush_per" %.1f) |"
    done
    echo
    # A session's fixed cost (connect, TLS, AUTH, QUIT) is about what one
    # process pays for one message: what the flush pays beyond that, per
    # further message.
    local loop_wall loop_n
    IFS='|' read -r _ loop_n _ loop_wall _ <<<"${ROWS[1]}"
    echo "Marginal cost of a message in the flush, (flush - one mailsend process) / ($NS - 1):" \
      "$(awk -v f="$flush_ms" -v l="$loop_wall" -v ln="$loop_n" -v n="$NS" -v r="$rtt" \
        'BEGIN { m = (f - l / ln) / (n - 1); printf "%.1f ms = %.2f RTT", m, m / r }')"
    echo
    echo "On the wire (delay-proxy.py --analyse: a turn is a client write after a reply, one round trip):"
    echo
    echo "- mailsend outbox flush: $flush_wire"
    echo "- mailsend, one process: $loop_wire"
    if [[ -n $plain_note ]]; then
      echo "- mailsend outbox flush --tls none: $plain_wire"
      echo "- smtp-source -d: $source_wire"
    fi
  } | tee "$OUT/flush-slow.md"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r name n got _ _ <<<"$r"
    [[ $got == "$n" ]] || { warn "$name: $got of $n messages delivered"; exit 1; }
  done
}

if [[ $LINK != slow ]]; then bench_local; fi
if [[ $LINK != local ]]; then bench_slow; fi
