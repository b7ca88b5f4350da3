#!/usr/bin/env bash
# `mailsend bulk` (a personalised campaign from a CSV list) against its
# peers, side by side in one run, with ratios:
#
#   plain   1,000 and 10,000 rows, plain SMTP (--tls none, no AUTH),
#           --concurrency 4, against Postfix's `smtp-source -s 4 -d` (the
#           ceiling: one prebuilt message, no templating), both to Postfix's
#           smtp-sink (PIPELINING offered). Goal: mailsend >= 0.8x its
#           messages/s. mailsend runs twice: journal on $TMPDIR's file
#           system and on /dev/shm (no fsync cost), to separate the disk.
#   tls     STARTTLS + AUTH PLAIN with a verified certificate, to the TLS
#           sink (examples/smtp_sink.rs, PIPELINING offered): mailsend bulk
#           --concurrency 1 and the default 4, against a Python smtplib
#           script on one connection (what a user would write: a loop of
#           send_message() of an EmailMessage personalised with
#           string.Template). Goal: mailsend >= 2x the script.
#   slow    A 50 ms round-trip link (scripts/delay-proxy.py, 25 ms each
#           way): mailsend bulk --concurrency 1 --tls none against
#           `smtp-source -s 1 -d` (one session, no PIPELINING), both to
#           smtp-sink: round trips per message (goal ~1) and rate (goal
#           >= 2x); then mailsend bulk with the default concurrency over
#           STARTTLS + AUTH against a loop of one msmtp process per message
#           (goal >= 30x; msmtp runs BENCH_SLOW_LOOP messages, its time per
#           message extrapolated). `delay-proxy.py --analyse` counts the
#           round trips the client waited for on the wire.
#   memory  Peak RSS (/usr/bin/time -f %M) of a 100-row and a 100,000-row
#           campaign to smtp-sink, plain; the journal on /dev/shm (this is
#           about memory, not the disk).
#
# Every campaign run gets a fresh journal (--journal in the work dir) and
# --yes. Each run must deliver every row (counted by the sink) or the
# script fails.
#
# Usage: scripts/bench-bulk.sh
#   BENCH_PARTS="plain tls slow memory"  which parts to run
#   BENCH_ROWS="1000 10000"     list sizes of the plain part
#   BENCH_REPEAT=3              runs of each plain-part method (median)
#   BENCH_TLS_ROWS="200 1000"   list sizes of the STARTTLS part
#   BENCH_DELAY_MS=25           one-way delay of the slow link
#   BENCH_SLOW_ROWS=200         rows sent by mailsend / smtp-source over it
#   BENCH_SLOW_LOOP=20          messages sent a msmtp process each over it
#   BENCH_MEMORY_ROWS="100 100000"
#   BENCH_NO_INSTALL=1          never apt-get install missing tools
#   MAILSEND_BIN=path           time this mailsend binary instead of building one
#   TMPDIR=/dev/shm             put the work dir (lists, journals) on tmpfs
# Output: tables on stdout and target/bench/bulk.md; the proxies' chunk
# logs target/bench/proxy-bulk-*.log.
# As root, installs missing postfix (smtp-source, smtp-sink), msmtp and
# GNU time with apt-get. Traffic goes to 127.0.0.1 only; recipients are in
# example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PARTS=${BENCH_PARTS:-plain tls slow memory}
ROWS_PLAIN=${BENCH_ROWS:-1000 10000}
ROWS_TLS=${BENCH_TLS_ROWS:-200 1000}
DELAY=${BENCH_DELAY_MS:-25}
NS=${BENCH_SLOW_ROWS:-200}
NL=${BENCH_SLOW_LOOP:-20}
ROWS_MEM=${BENCH_MEMORY_ROWS:-100 100000}
REPEAT=${BENCH_REPEAT:-3}
OUT=$ROOT/target/bench
PASS=bench-password
export SINK_PASSWORD=$PASS
MAILSEND_OVERRIDE=${MAILSEND_BIN:-}
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' || true)
unset SSL_CERT_FILE SSL_CERT_DIR

say() { printf '== %s\n' "$*" >&2; }
warn() { printf 'bench-bulk: %s\n' "$*" >&2; }
part() { [[ " $PARTS " == *" $1 "* ]]; }

# --- tools --------------------------------------------------------------

# apt package -> a command it provides
install_missing() {
  local want=() pkg cmd
  for pair in "$@"; do
    pkg=${pair%%:*} cmd=${pair#*:}
    command -v "$cmd" >/dev/null || [[ -x $cmd ]] || want+=("$pkg")
  done
  ((${#want[@]})) || return 0
  if [[ ${BENCH_NO_INSTALL:-0} == 1 || $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    warn "not installing ${want[*]} (needs root and apt-get, and no BENCH_NO_INSTALL=1)"
    return 0
  fi
  say "apt-get install ${want[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends "${want[@]}" >&2 ||
    warn "apt-get install failed; going on with what is installed"
}
install_missing postfix:smtp-source msmtp:msmtp time:/usr/bin/time
command -v smtp-source >/dev/null && command -v smtp-sink >/dev/null ||
  { warn "needs Postfix's smtp-source and smtp-sink (apt-get install postfix)"; exit 1; }

# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
build_bench_tools

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench-bulk.XXXXXX")
SHM=
[[ -d /dev/shm && -w /dev/shm ]] && SHM=$(mktemp -d /dev/shm/mailsend-bench-bulk.XXXXXX)
PIDS=() # everything started here, ended by pid
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  cd "$ROOT" && rm -rf "$WORK" ${SHM:+"$SHM"}
}
trap cleanup EXIT
cd "$WORK"
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME
mkdir -p "$HOME/.config/mailsend"
: >"$HOME/.config/mailsend/config.toml"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN { printf f, a / b }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# The journal is fsynced once per row (before the row counts): its disk
# matters. The file system of $1 and the median of 20 file + directory fsyncs.
disk() {
  python3 "$ROOT/scripts/fsync-probe.py" "$1"
}
disk_line() { echo "$(df -T "$1" | awk 'NR == 2 { print $2 }') ($1), file + directory fsync: $(disk "$1")"; }

# --- sinks --------------------------------------------------------------

# The TLS sink: STARTTLS, AUTH required, certificate from a throw-away CA.
SINK_DIR=$WORK "$SINK" >sink.out 2>sink.log &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^CA=' sink.out 2>/dev/null && break; sleep 0.1; done
TPORT=$(sed -n 's/^PORT=//p' sink.out)
CA=$(sed -n 's/^CA=//p' sink.out)
[[ -n $TPORT && -f $CA ]] || { warn "the TLS sink did not start"; exit 1; }
# Messages accepted in TLS + AUTH sessions (the sink logs a session when it ends).
tdelivered() { awk -F'delivered=' '/tls=true auth=true/ { split($2, a, " "); n += a[1] } END { print n + 0 }' sink.log; }
# Waits until the TLS sink has counted $1 messages (sessions end after QUIT).
twait() {
  local i
  for i in $(seq 50); do (($(tdelivered) >= $1)) && return 0; sleep 0.1; done
}

# Postfix's smtp-sink: plain, PIPELINING offered; -c prints running
# counters ("mesg=N" after each message). As root it must drop to -u.
PPORT=$(free_port)
user=()
((EUID == 0)) && user=(-u nobody)
smtp-sink -c "${user[@]}" "127.0.0.1:$PPORT" 256 >smtp-sink.out 2>smtp-sink.err &
PIDS+=($!)
sleep 0.3
pdelivered() { tr '\r' '\n' <smtp-sink.out | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1 | grep . || echo 0; }
pwait() {
  local i
  for i in $(seq 50); do (($(pdelivered) >= $1)) && return 0; sleep 0.1; done
}

# --- the campaign -------------------------------------------------------

printf 'Dear {{ name }},\n\nyour customer number is {{ id }}.\n{%% if city %%}Greetings to {{ city }}!{%% endif %%}\n\nBest regards,\nThe news team\n' >letter.txt
list() { # rows, file
  python3 - "$1" "$2" <<'PY'
import sys
n = int(sys.argv[1])
with open(sys.argv[2], "w", encoding="utf-8", newline="") as f:
    f.write("email,name,id,city\r\n")
    for i in range(1, n + 1):
        f.write(f'p{i}@example.com,"Zoë Müller {i}",{i},Köln\r\n')
PY
}
SUBJECT='Hello {{ name }}'
UNSUB='https://example.com/u?id={{ id }}'
LISTID='News <news.example.com>'
JN=0
# mailsend bulk of list $1, journal in dir $2 (a fresh file each run), then
# the extra arguments. Sets WALL (ms).
bulk() {
  local data=$1 jdir=$2 t0 t1
  shift 2
  JN=$((JN + 1))
  t0=$(ms)
  "$MAILSEND" bulk --data "$data" --journal "$jdir/run-$JN.journal" --yes \
    --from "News <news@example.com>" --subject "$SUBJECT" --body-file letter.txt \
    --unsubscribe-url "$UNSUB" --list-id "$LISTID" "$@" >"bulk-$JN.out" 2>"bulk-$JN.err" ||
    { cat "bulk-$JN.err" >&2; warn "mailsend bulk failed"; exit 1; }
  t1=$(ms)
  WALL=$((t1 - t0))
  rm -f "$jdir/run-$JN.journal"
}
plain() { # mailsend bulk, plain SMTP to smtp-sink via port $PORT_TO
  MAILSEND_HOST=127.0.0.1 MAILSEND_PORT=$PORT_TO bulk "$@" --tls none
}
tls() {
  MAILSEND_HOST=127.0.0.1 MAILSEND_PORT=$PORT_TO MAILSEND_CA_FILE=$CA \
    MAILSEND_USER=bench@example.com MAILSEND_PASSWORD=$PASS bulk "$@"
}

# The size of one composed message, for smtp-source's payload.
list 1 one.csv
"$MAILSEND" bulk --data one.csv --journal "$WORK/one.journal" --from "News <news@example.com>" \
  --subject "$SUBJECT" --body-file letter.txt --unsubscribe-url "$UNSUB" --list-id "$LISTID" \
  --dry-run >one.eml 2>/dev/null
SIZE=$(wc -c <one.eml)
# smtp-source -l N sends N bytes of payload after its own few headers.
smtp_source() { # count, server, then smtp-source options
  local n=$1 server=$2
  shift 2
  smtp-source "$@" -m "$n" -l "$SIZE" -f news@example.com -t a@example.com -S bench "$server"
}

REPORT=()
line() { REPORT+=("$*"); }
rate() { awk -v n="$1" -v w="$2" 'BEGIN { printf "%.0f", n * 1000 / w }'; }

line "# mailsend bulk: campaigns against their peers, one run"
line ""
line "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), $(uname -srm), $(nproc) CPUs, load at start: $(load)"
line "- mailsend $("$MAILSEND" --version | cut -d' ' -f2) ($MAILSEND); smtp-source/smtp-sink from" \
  "Postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null || echo '?');" \
  "$(msmtp --version 2>/dev/null | head -1 || echo 'msmtp not installed'); $(python3 --version)"
line "- the campaign: subject, text (Jinja: name, id, an if) and List-Unsubscribe/List-Id per row;" \
  "one message is $SIZE bytes (smtp-source sends the same payload size, prebuilt: -l $SIZE)"
line "- journal (work dir): $(disk_line "$WORK")"
[[ -n $SHM ]] && line "- journal (tmpfs): $(disk_line "$SHM")"
line ""

# --- plain: throughput against smtp-source ------------------------------

bench_plain() {
  line "## Plain SMTP, loopback, 4 connections (smtp-sink, PIPELINING offered; median of $REPEAT runs each, interleaved)"
  line ""
  line "| rows | method | delivered | wall ms (median) | all runs, ms | messages/s | x smtp-source |"
  line "|---:|---|---:|---:|---|---:|---:|"
  local n before src_ms got jdirs=("$WORK") jd r k t0 t1
  [[ -n $SHM && $(df -T "$WORK" | awk 'NR == 2 { print $2 }') != tmpfs ]] && jdirs+=("$SHM")
  PORT_TO=$PPORT
  for n in $ROWS_PLAIN; do
    list "$n" "list-$n.csv"
    # warm-up (page cache, the binary)
    plain "list-$n.csv" "$WORK" --concurrency 4 --limit 50
    local times=() # "k ms": k = 0 for smtp-source, 1.. for each journal dir
    for r in $(seq "$REPEAT"); do
      say "run $r/$REPEAT: smtp-source -s 4 -d -m $n"
      before=$(pdelivered)
      t0=$(ms)
      smtp_source "$n" "127.0.0.1:$PPORT" -s 4 -d
      t1=$(ms)
      pwait $((before + n))
      got=$(($(pdelivered) - before))
      [[ $got == "$n" ]] || { warn "smtp-source: $got of $n delivered"; exit 1; }
      times+=("0 $((t1 - t0))")
      k=0
      for jd in "${jdirs[@]}"; do
        k=$((k + 1))
        say "run $r/$REPEAT: mailsend bulk --tls none --concurrency 4, $n rows, journal in $jd"
        before=$(pdelivered)
        plain "list-$n.csv" "$jd" --concurrency 4
        pwait $((before + n))
        got=$(($(pdelivered) - before))
        [[ $got == "$n" ]] || { warn "mailsend: $got of $n delivered"; exit 1; }
        times+=("$k $WALL")
      done
    done
    all() { printf '%s\n' "${times[@]}" | awk -v k="$1" '$1 == k { print $2 }'; }
    median() { all "$1" | sort -n | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
    src_ms=$(median 0)
    line "| $n | \`smtp-source -s 4 -d\` (prebuilt message) | $n | $src_ms | $(all 0 | paste -sd' ') | $(rate "$n" "$src_ms") | 1.00 |"
    k=0
    for jd in "${jdirs[@]}"; do
      k=$((k + 1))
      local med
      med=$(median "$k")
      line "| $n | mailsend bulk --concurrency 4 (journal on $(df -T "$jd" | awk 'NR == 2 { print $2 }')) | $n |" \
        "$med | $(all "$k" | paste -sd' ') | $(rate "$n" "$med") | $(div "$src_ms" "$med") |"
    done
  done
  line ""
  line "Goal: mailsend >= 0.8x smtp-source's messages/s (the last column; wall time of the whole" \
    "process, list check and journal included)."
  line ""
}

# --- tls: against a Python smtplib script -------------------------------

cat >campaign.py <<'PY'
# What a user would write: one connection, STARTTLS, login, a loop of
# send_message() over the list, personalised with string.Template.
import csv, smtplib, ssl, sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from string import Template

host, port, ca, user, password, data = sys.argv[1:7]
body = Template("Dear $name,\n\nyour customer number is $id.\nGreetings to $city!\n\n"
                "Best regards,\nThe news team\n")
context = ssl.create_default_context(cafile=ca)
with smtplib.SMTP(host, int(port)) as server:
    server.starttls(context=context)
    server.login(user, password)
    with open(data, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            msg = EmailMessage()
            msg["From"] = "News <news@example.com>"
            msg["To"] = row["email"]
            msg["Subject"] = f"Hello {row['name']}"
            msg["Date"] = formatdate(localtime=True)
            msg["Message-ID"] = make_msgid(domain="example.com")
            msg["List-Unsubscribe"] = f"<https://example.com/u?id={row['id']}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            msg["List-Id"] = "News <news.example.com>"
            msg.set_content(body.substitute(row))
            server.send_message(msg)
PY

bench_tls() {
  line "## STARTTLS + AUTH PLAIN, verified certificate, loopback (examples/smtp_sink.rs, PIPELINING offered)"
  line ""
  line "| rows | method | delivered | wall ms | messages/s | x Python |"
  line "|---:|---|---:|---:|---:|---:|"
  local before got py_ms t0 t1 c n
  PORT_TO=$TPORT
  for n in $ROWS_TLS; do
    list "$n" "list-tls.csv"
    tls "list-tls.csv" "$WORK" --limit 20 # warm-up
    say "python3 smtplib, $n rows, one connection"
    before=$(tdelivered)
    t0=$(ms)
    python3 campaign.py 127.0.0.1 "$TPORT" "$CA" bench@example.com "$PASS" list-tls.csv
    t1=$(ms)
    py_ms=$((t1 - t0))
    twait $((before + n))
    got=$(($(tdelivered) - before))
    [[ $got == "$n" ]] || { warn "python: $got of $n delivered"; exit 1; }
    line "| $n | Python smtplib, one connection (send_message loop) | $got | $py_ms | $(rate "$n" "$py_ms") | 1.00 |"
    for c in 1 4; do
      say "mailsend bulk --concurrency $c, $n rows, STARTTLS + AUTH"
      before=$(tdelivered)
      tls "list-tls.csv" "$WORK" --concurrency "$c"
      twait $((before + n))
      got=$(($(tdelivered) - before))
      [[ $got == "$n" ]] || { warn "mailsend: $got of $n delivered"; exit 1; }
      line "| $n | mailsend bulk --concurrency $c | $got | $WALL | $(rate "$n" "$WALL") | $(div "$py_ms" "$WALL") |"
    done
  done
  line ""
  line "Goal: mailsend >= 2x the Python script (journal in the work dir, see above)."
  line ""
}

# --- slow: a 50 ms round trip -------------------------------------------

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
wire() { # $1 = proxy name: the round trips the client waited for
  cp "$WORK/proxy-$1.log" "$OUT/proxy-bulk-$1.log"
  python3 "$PROXY" --analyse "$WORK/proxy-$1.log" --delay-ms "$DELAY"
}

bench_slow() {
  local rtt=$((2 * DELAY)) before got t0 t1 i
  say "slow link: $DELAY ms each way through scripts/delay-proxy.py"
  python3 "$PROXY" --self-test --delay-ms "$DELAY" >proxy-selftest.txt 2>&1 ||
    warn "the proxy's self-test is off: figures below are suspect"
  line "## A ${rtt} ms round trip (scripts/delay-proxy.py, $DELAY ms each way)"
  line ""
  line "- proxy self-test: $(grep -o 'RTT min.*' proxy-selftest.txt | head -1)"
  line "- RTT per message = wall / (messages x $rtt ms) x connections, session set-up included"
  line ""
  line "| method | messages | delivered | connections | wall ms | ms per message | RTT per message per connection | ratio |"
  line "|---|---:|---:|---:|---:|---:|---:|---:|"
  list "$NS" list-slow.csv

  # One session each, plain, smtp-sink.
  start_proxy source "$PPORT"
  say "smtp-source -s 1 -d -m $NS over the slow link"
  before=$(pdelivered)
  t0=$(ms)
  smtp_source "$NS" "127.0.0.1:$PROXY_PORT" -s 1 -d
  t1=$(ms)
  local src_ms=$((t1 - t0))
  pwait $((before + NS))
  got=$(($(pdelivered) - before))
  [[ $got == "$NS" ]] || { warn "smtp-source: $got of $NS delivered"; exit 1; }
  line "| \`smtp-source -s 1 -d\` (no PIPELINING; smtp-sink) | $NS | $got | 1 | $src_ms |" \
    "$(div "$src_ms" "$NS" %.1f) | $(div "$src_ms" $((NS * rtt))) | 1.00 |"
  local source_wire
  source_wire=$(wire source)

  start_proxy c1 "$PPORT"
  PORT_TO=$PROXY_PORT
  say "mailsend bulk --concurrency 1 --tls none, $NS rows over the slow link"
  before=$(pdelivered)
  plain list-slow.csv "$WORK" --concurrency 1
  pwait $((before + NS))
  got=$(($(pdelivered) - before))
  [[ $got == "$NS" ]] || { warn "mailsend: $got of $NS delivered"; exit 1; }
  line "| mailsend bulk --concurrency 1 --tls none (smtp-sink) | $NS | $got | 1 | $WALL |" \
    "$(div "$WALL" "$NS" %.1f) | $(div "$WALL" $((NS * rtt))) | $(div "$src_ms" "$WALL") x smtp-source |"
  local c1_wire
  c1_wire=$(wire c1)

  # STARTTLS + AUTH to the TLS sink: msmtp a process per message, then
  # mailsend with the default concurrency.
  local per_msmtp=
  if command -v msmtp >/dev/null; then
    start_proxy msmtp "$TPORT"
    write_msmtprc msmtprc "$PROXY_PORT" "$CA" news@example.com
    say "$NL msmtp processes over the slow link"
    before=$(tdelivered)
    t0=$(ms)
    for i in $(seq "$NL"); do
      "$MAILSEND" bulk --data list-slow.csv --journal "$WORK/msmtp-$i.journal" --limit 1 \
        --from "News <news@example.com>" --subject "$SUBJECT" --body-file letter.txt \
        --unsubscribe-url "$UNSUB" --list-id "$LISTID" --dry-run 2>/dev/null |
        msmtp -C msmtprc "p$i@example.com"
    done
    t1=$(ms)
    local msmtp_ms=$((t1 - t0))
    twait $((before + NL))
    got=$(($(tdelivered) - before))
    [[ $got == "$NL" ]] || { warn "msmtp: $got of $NL delivered"; exit 1; }
    per_msmtp=$(div "$msmtp_ms" "$NL" %.3f)
    line "| msmtp, a process per message (STARTTLS + AUTH; composed by a dry run) | $NL | $got | $NL |" \
      "$msmtp_ms | $(div "$msmtp_ms" "$NL" %.1f) | $(div "$msmtp_ms" $((NL * rtt))) | 1.00 |"
  else
    warn "skipping msmtp: not installed"
  fi

  start_proxy c4 "$TPORT"
  PORT_TO=$PROXY_PORT
  say "mailsend bulk (default --concurrency 4), STARTTLS + AUTH, $NS rows over the slow link"
  before=$(tdelivered)
  tls list-slow.csv "$WORK"
  twait $((before + NS))
  got=$(($(tdelivered) - before))
  [[ $got == "$NS" ]] || { warn "mailsend: $got of $NS delivered"; exit 1; }
  local vs=n/a
  [[ -n $per_msmtp ]] && vs="$(div "$per_msmtp" "$(div "$WALL" "$NS" %.3f)" %.1f) x msmtp"
  line "| mailsend bulk, default --concurrency 4 (STARTTLS + AUTH) | $NS | $got | 4 | $WALL |" \
    "$(div "$WALL" "$NS" %.1f) | $(div $((WALL * 4)) $((NS * rtt))) | $vs |"
  local c4_wire
  c4_wire=$(wire c4)
  line ""
  line "Goals: mailsend --concurrency 1 about 1 RTT per message and >= 2x smtp-source -s 1 -d;" \
    "the default concurrency >= 30x the msmtp loop (per message, msmtp's extrapolated from $NL)."
  line ""
  line "On the wire (delay-proxy.py --analyse: a turn is a client write after a reply, one round trip):"
  line ""
  line '```'
  line "smtp-source -s 1 -d:"
  line "$source_wire"
  line "mailsend bulk --concurrency 1 --tls none:"
  line "$c1_wire"
  line "mailsend bulk --concurrency 4, STARTTLS + AUTH:"
  line "$c4_wire"
  line '```'
  line ""
}

# --- memory -------------------------------------------------------------

bench_memory() {
  [[ -x /usr/bin/time ]] || { warn "skipping memory: needs GNU time (/usr/bin/time)"; return; }
  local jd=${SHM:-$WORK} n before got kib secs
  line "## Peak RSS of a whole campaign (plain, --concurrency 4, smtp-sink; journal on $(df -T "$jd" | awk 'NR == 2 { print $2 }'))"
  line ""
  line "| rows | delivered | peak RSS | wall s | messages/s |"
  line "|---:|---:|---:|---:|---:|"
  for n in $ROWS_MEM; do
    list "$n" "list-mem.csv"
    say "mailsend bulk, $n rows, under /usr/bin/time"
    before=$(pdelivered)
    JN=$((JN + 1))
    MAILSEND_HOST=127.0.0.1 MAILSEND_PORT=$PPORT /usr/bin/time -f '%M %e' -o time.out \
      "$MAILSEND" bulk --data list-mem.csv --journal "$jd/run-$JN.journal" --yes --tls none \
      --from "News <news@example.com>" --subject "$SUBJECT" --body-file letter.txt \
      --unsubscribe-url "$UNSUB" --list-id "$LISTID" >/dev/null 2>"bulk-$JN.err" ||
      { cat "bulk-$JN.err" >&2; warn "mailsend bulk failed"; exit 1; }
    rm -f "$jd/run-$JN.journal"
    pwait $((before + n))
    got=$(($(pdelivered) - before))
    [[ $got == "$n" ]] || { warn "mailsend: $got of $n delivered"; exit 1; }
    read -r kib secs <time.out
    line "| $n | $got | $(div "$kib" 1024 %.1f) MiB | $secs | $(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') |"
  done
  line ""
}

part plain && bench_plain
part tls && bench_tls
part slow && bench_slow
part memory && bench_memory
line "- load at the end: $(load)"
printf '%s\n' "${REPORT[@]}" | tee "$OUT/bulk.md"
