#!/usr/bin/env bash
# Whole-process cost of one send: mailsend vs curl vs msmtp, same run.
#
# Each tool sends the same message to a local sink (examples/smtp_sink.rs)
# over STARTTLS + AUTH PLAIN and verifies the sink's certificate against
# its throw-away CA. We time complete processes, because a CLI mailer pays
# its start-up (trust store, config, TLS set-up) on every send, e.g. in cron.
#
# Usage: scripts/bench.sh
#   BENCH_RUNS=30      timed sends per tool
#   BENCH_WARMUP=3     untimed sends per tool first (page cache, CPU clocks)
#   BENCH_EXTRA=1      also time mailsend with SSL_CERT_FILE/DIR set, and
#                      mailsend signing with DKIM (RSA 2048, Ed25519) (0: skip)
#   BENCH_LOOP=1       time with the shell loop even if hyperfine is there
#   BENCH_NO_INSTALL=1 never apt-get install missing tools
#   MAILSEND_BIN=path  time this mailsend binary instead of building one
#   SINK_PIPELINING=0  the sink does not offer PIPELINING
# Output: a table on stdout; target/bench/results.md, per-tool raw times,
# hyperfine JSON and the sink's session log beside it.
# As root, installs missing msmtp, hyperfine and jq with apt-get.
# Traffic goes to 127.0.0.1 only; the recipient is in example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${BENCH_RUNS:-30}
WARMUP=${BENCH_WARMUP:-3}
OUT=$ROOT/target/bench
USER_NAME=bench@example.com
RCPT=a@example.com
# Fixed, local-only password: it appears in argv (curl) and in results.md.
PASS=${SINK_PASSWORD:-bench-password}
export SINK_PASSWORD=$PASS
MAILSEND_OVERRIDE=${MAILSEND_BIN:-} # read before MAILSEND_* are cleared

# Settings in the caller's environment would change what gets measured:
# MAILSEND_* (e.g. a password command, a .env path) and SSL_CERT_FILE/DIR,
# which change how mailsend loads trust roots (a bundle elsewhere than the
# hashed directory is parsed whole). Many containers set these, so that case
# gets its own row: with the caller's values, or with the Debian bundle if
# the caller set none.
mapfile -t SSL_ENV < <(env | grep -E '^SSL_CERT_(FILE|DIR)=' | sort)
caller_had_ssl_env=${#SSL_ENV[@]}
((caller_had_ssl_env)) || SSL_ENV=(SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
unset SSL_CERT_FILE SSL_CERT_DIR
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' || true)

say() { printf '== %s\n' "$*" >&2; }
warn() { printf 'bench: %s\n' "$*" >&2; }

# --- tools --------------------------------------------------------------

# Installs only what apt can provide; without these the benchmark degrades
# (skips msmtp, times with a shell loop) rather than failing.
install_missing() {
  local missing=() available=() pkg
  for pkg in "$@"; do
    command -v "$pkg" >/dev/null || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ ${BENCH_NO_INSTALL:-0} == 1 || $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    warn "not installing ${missing[*]} (needs root and apt-get, and no BENCH_NO_INSTALL=1)"
    return 0
  fi
  for pkg in "${missing[@]}"; do
    if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      available+=("$pkg")
    else
      warn "apt has no candidate for $pkg"
    fi
  done
  ((${#available[@]})) || return 0
  say "apt-get install ${available[*]}"
  # Another apt may hold the lock (a parallel setup): wait rather than fail.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
    install -y -qq --no-install-recommends "${available[@]}" >&2 ||
    warn "apt-get install failed; going on with what is installed"
}

install_missing msmtp hyperfine jq

use_hyperfine=0
if [[ ${BENCH_LOOP:-0} != 1 ]] && command -v hyperfine >/dev/null && command -v jq >/dev/null; then
  use_hyperfine=1
fi

# --- build --------------------------------------------------------------

# The sink only needs tests/support, so it builds even while src/ does not.
say "cargo build --release (mailsend and the example sink)"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
build_bench_tools

# --- sink ---------------------------------------------------------------

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench.XXXXXX")
SINK_PID=
cleanup() {
  if [[ -n $SINK_PID ]]; then
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
  fi
  # Keep the sink's session log: it is the evidence that sends delivered.
  if [[ -f $WORK/sink.log ]]; then cp "$WORK/sink.log" "$OUT/sink.log"; fi
  cd "$ROOT" && rm -rf "$WORK"
}
trap cleanup EXIT

# Everything runs from $WORK, so no ./.env of the caller's leaks into
# mailsend's settings; HOME is a scratch dir too, so no ~/.curlrc or
# mailsend config.toml does. Its empty config.toml also shadows
# /etc/mailsend/config.toml. (Set after the builds: cargo needs the real HOME.)
cd "$WORK"
export HOME=$WORK/home
unset XDG_CONFIG_HOME XDG_STATE_HOME CURL_HOME
mkdir -p "$HOME/.config/mailsend"
: >"$HOME/.config/mailsend/config.toml"
SINK_DIR=$WORK "$SINK" >sink.out 2>sink.log &
SINK_PID=$!
for _ in $(seq 100); do
  grep -q '^CA=' sink.out 2>/dev/null && break
  kill -0 "$SINK_PID" 2>/dev/null || { cat sink.log >&2; warn "sink died"; exit 1; }
  sleep 0.1
done
PORT=$(sed -n 's/^PORT=//p' sink.out)
CA=$(sed -n 's/^CA=//p' sink.out)
[[ -n $PORT && -f $CA ]] || { warn "sink did not report PORT and CA"; exit 1; }
# The sink's PKI also has a CA that did not sign its certificate: trusting
# it instead must make every tool refuse, which proves each one verifies.
WRONG_CA=$(dirname "$CA")/untrusted-ca.pem
say "sink on 127.0.0.1:$PORT, CA $CA"

# Same bytes for every tool: the message mailsend itself composes.
if ! MAILSEND_USER=$USER_NAME "$MAILSEND" --to "$RCPT" --subject bench --body hello \
  --dry-run >msg.txt 2>msg.err; then
  cat msg.err >&2
  warn "$MAILSEND --dry-run failed: cannot compose the test message"
  exit 1
fi

# Signing keys for the DKIM rows (private: mailsend refuses others).
(umask 077
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim-rsa.pem 2>/dev/null
  openssl genpkey -algorithm ED25519 -out dkim-ed25519.pem 2>/dev/null)

# msmtp reads only this file; 0600 because it holds the password.
write_msmtprc msmtprc "$PORT" "$CA" "$USER_NAME"
# The SMTP dialogue for openssl s_client: the same message, dot-stuffed
# (its lines never start with a dot), CRLF throughout.
{
  printf 'EHLO bench.example.com\r\nAUTH PLAIN %s\r\nMAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n' \
    "$(printf '\0%s\0%s' "$USER_NAME" "$PASS" | base64 -w0)" "$USER_NAME" "$RCPT"
  cat msg.txt
  printf '.\r\nQUIT\r\n'
} >dialogue.txt
write_msmtprc msmtprc.wrong "$PORT" "$WRONG_CA" "$USER_NAME"

# --- commands -----------------------------------------------------------

# How to run one send of a tool, trusting CA file $2: sets CMD_ENV (extra
# environment), CMD_ARGV and CMD_STDIN (a file, or empty).
command_for() { # $1 = tool, $2 = CA file
  local ca=$2
  CMD_ENV=() CMD_STDIN=
  case $1 in
    mailsend | mailsend-sslenv | mailsend-dkim-*)
      [[ $1 == mailsend-sslenv ]] && CMD_ENV=("${SSL_ENV[@]}")
      # DKIM: the same send, signed with a 2048-bit RSA or an Ed25519 key.
      [[ $1 == mailsend-dkim-* ]] && CMD_ENV=("MAILSEND_DKIM_KEY=$WORK/${1#mailsend-}.pem"
        MAILSEND_DKIM_SELECTOR=bench)
      CMD_ENV+=(MAILSEND_HOST=127.0.0.1 "MAILSEND_PORT=$PORT" "MAILSEND_CA_FILE=$ca"
        "MAILSEND_USER=$USER_NAME" "MAILSEND_PASSWORD=$PASS")
      CMD_ARGV=("$MAILSEND" --to "$RCPT" --subject bench --body hello)
      ;;
    curl)
      # AUTH=PLAIN: the mechanism the others use (curl would pick its own).
      CMD_ARGV=(curl -sS --url "smtp://127.0.0.1:$PORT" --ssl-reqd --cacert "$ca"
        --user "$USER_NAME:$PASS" --login-options AUTH=PLAIN
        --mail-from "$USER_NAME" --mail-rcpt "$RCPT" --upload-file "$WORK/msg.txt")
      ;;
    msmtp)
      local rc=$WORK/msmtprc
      [[ $ca == "$WRONG_CA" ]] && rc=$WORK/msmtprc.wrong
      CMD_ARGV=(msmtp -C "$rc" "$RCPT")
      CMD_STDIN=$WORK/msg.txt
      ;;
    s_client)
      # The floor: OpenSSL itself, the whole dialogue written at once
      # after the handshake (no waiting for any reply), then QUIT.
      CMD_ARGV=(openssl s_client -quiet -no_ign_eof -starttls smtp -connect "127.0.0.1:$PORT"
        -CAfile "$ca" -verify_return_error -verify_ip 127.0.0.1)
      CMD_STDIN=$WORK/dialogue.txt
      ;;
  esac
}

# The same as one `sh -c` line, for the loop, hyperfine's shell mode and
# the report.
shell_line() { # $1 = tool, $2 = CA file
  command_for "$1" "$2"
  local line
  line=$(printf '%q ' "${CMD_ENV[@]}" "${CMD_ARGV[@]}")
  [[ -n $CMD_STDIN ]] && line+="< $(printf '%q' "$CMD_STDIN")"
  printf '%s\n' "${line% }"
}

delivered_count() { grep -c 'tls=true auth=true delivered=1 ' sink.log || true; }

# Waits (up to 3 s) until the sink has logged more than $1 deliveries.
wait_delivered() {
  local i
  for i in $(seq 30); do
    (($(delivered_count) > $1)) && return 0
    ((i < 30)) && sleep 0.1
  done
  return 1
}

# A tool is timed only if one send exits 0 *and* the sink logs a TLS,
# authenticated, accepted message for it, and if a send trusting the wrong
# CA fails: then the timings include real certificate verification.
verify() { # $1 = tool
  local tool=$1 before
  local binary=$tool
  [[ $tool == s_client ]] && binary=openssl
  if [[ $tool != mailsend* ]] && ! command -v "$binary" >/dev/null; then
    warn "skipping $tool: not installed"
    return 1
  fi
  before=$(delivered_count)
  if ! sh -c "$(shell_line "$tool" "$CA")" >"verify-$tool.log" 2>&1; then
    warn "skipping $tool: the test send failed:"
    sed 's/^/    /' "verify-$tool.log" >&2
    return 1
  fi
  if ! wait_delivered "$before"; then
    warn "skipping $tool: it exited 0 but the sink logged no TLS+AUTH delivery:"
    tail -n 3 sink.log | sed 's/^/    /' >&2
    return 1
  fi
  if sh -c "$(shell_line "$tool" "$WRONG_CA")" >"verify-$tool-wrongca.log" 2>&1; then
    warn "skipping $tool: it also sent while trusting the wrong CA (no verification?)"
    return 1
  fi
}

TOOLS=(mailsend curl msmtp s_client)
[[ ${BENCH_EXTRA:-1} == 1 ]] && TOOLS+=(mailsend-sslenv mailsend-dkim-rsa mailsend-dkim-ed25519)
timed=()
for tool in "${TOOLS[@]}"; do
  if verify "$tool"; then timed+=("$tool"); fi
done
[[ " ${timed[*]} " == *" mailsend "* ]] || { warn "mailsend itself does not deliver; nothing to compare"; exit 1; }

# --- timing -------------------------------------------------------------

# Both methods leave, per tool, $OUT/<tool>.times (wall ms, one line per
# run) and $OUT/<tool>.cpu (mean user+sys ms per send).
rm -f "$OUT"/*.times "$OUT"/*.cpu "$OUT"/*.json
delivered_before=$(delivered_count)
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
  warn "load average $load on $(nproc) CPUs: expect noisy numbers (compare medians, rerun)"
fi
start_s=$SECONDS

if ((use_hyperfine)); then
  say "hyperfine: $WARMUP warm-up + $RUNS timed sends per tool (${timed[*]})"
  for tool in "${timed[@]}"; do
    command_for "$tool" "$CA"
    json=$OUT/hyperfine-$tool.json
    if [[ -z $CMD_STDIN ]]; then
      # No shell (-N): at ~5 ms per send, hyperfine's subtraction of sh's
      # start-up is too coarse. The tool's environment is hyperfine's.
      env "${CMD_ENV[@]}" hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" \
        -n "$tool" "$(printf '%q ' "${CMD_ARGV[@]}")" >&2
    else
      # Needs `< file` (hyperfine 1.15 has no --input): sh -c, start-up subtracted.
      hyperfine --warmup "$WARMUP" --runs "$RUNS" --export-json "$json" \
        -n "$tool" "$(shell_line "$tool" "$CA")" >&2
    fi
    jq -r '.results[0].times[] * 1000' "$json" >"$OUT/$tool.times"
    jq -r '.results[0] | (.user + .system) * 1000' "$json" >"$OUT/$tool.cpu"
  done
  method="hyperfine $(hyperfine --version | cut -d' ' -f2) (msmtp via sh -c, shell start-up subtracted)"
else
  # Round-robin over the tools, so drift (other load, CPU clocks) hits all
  # alike. Wall time from $EPOCHREALTIME (no fork); CPU from the shell's
  # children rusage via `times`, which must not run in a subshell.
  say "shell loop: $WARMUP warm-up + $RUNS timed sends per tool, interleaved (${timed[*]})"
  now_us() {
    if [[ -n ${EPOCHREALTIME:-} ]]; then T=${EPOCHREALTIME/[.,]/}; else T=$(($(date +%s%N) / 1000)); fi
  }
  children_cpu_us() { # user+sys of all children so far, into C
    local re='([0-9]+)m([0-9]+)[.,]([0-9]+)s ([0-9]+)m([0-9]+)[.,]([0-9]+)s'
    times >times.out
    [[ $(sed -n 2p times.out) =~ $re ]] || { C=0; return; }
    local m=$((BASH_REMATCH[1] + BASH_REMATCH[4]))
    local ms=$((10#${BASH_REMATCH[2]}${BASH_REMATCH[3]} + 10#${BASH_REMATCH[5]}${BASH_REMATCH[6]}))
    C=$(((m * 60000 + ms) * 1000))
  }
  declare -A cpu_sum=() line_of=()
  for tool in "${timed[@]}"; do line_of[$tool]=$(shell_line "$tool" "$CA"); done
  for ((i = 0; i < WARMUP + RUNS; i++)); do
    for tool in "${timed[@]}"; do
      children_cpu_us; c0=$C; now_us; t0=$T
      if ! sh -c "${line_of[$tool]}" >/dev/null 2>"run-$tool.err"; then
        cat "run-$tool.err" >&2
        warn "$tool failed during timing"
        exit 1
      fi
      now_us; t1=$T; children_cpu_us; c1=$C
      if ((i >= WARMUP)); then
        awk -v us=$((t1 - t0)) 'BEGIN { printf "%.3f\n", us / 1000 }' >>"$OUT/$tool.times"
        cpu_sum[$tool]=$((${cpu_sum[$tool]:-0} + c1 - c0))
      fi
    done
  done
  for tool in "${timed[@]}"; do
    awk -v us="${cpu_sum[$tool]}" -v n="$RUNS" 'BEGIN { printf "%.3f\n", us / n / 1000 }' >"$OUT/$tool.cpu"
  done
  method="shell loop, interleaved, sh -c (its ~1 ms start-up included in every row)"
fi
elapsed_s=$((SECONDS - start_s))

# Every timed send, warm-ups included, must have reached the sink.
expected=$(((WARMUP + RUNS) * ${#timed[@]}))
wait_delivered $((delivered_before + expected - 1)) || true
got=$(($(delivered_count) - delivered_before))
((got == expected)) || warn "the sink logged $got deliveries for $expected timed sends; see $OUT/sink.log"

# --- report -------------------------------------------------------------

stats() { # $1 = tool -> "median mean cpu", in ms
  sort -n "$OUT/$1.times" | awk -v cpu="$(cat "$OUT/$1.cpu")" '
    { v[NR] = $1; sum += $1 }
    END {
      med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.2f %.2f %.2f\n", med, sum / NR, cpu
    }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
read -r ms_median _ _ < <(stats mailsend)

{
  echo "# mailsend benchmark: one whole-process send (STARTTLS + AUTH PLAIN, verified)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%SZ'), host: $(uname -srm), $(nproc) CPUs," \
    "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- runs: $RUNS timed + $WARMUP warm-up per tool; $method; timing took ${elapsed_s}s"
  echo "- sink: examples/smtp_sink.rs on 127.0.0.1:$PORT, PIPELINING" \
    "$([[ ${SINK_PIPELINING:-1} == 0 ]] && echo 'not offered' || echo offered)," \
    "$got of $expected timed sends delivered (TLS + AUTH)"
  echo "- versions: mailsend $("$MAILSEND" --version | cut -d' ' -f2)," \
    "$(curl --version | head -1 | cut -d' ' -f1-2,5)," \
    "$(msmtp --version 2>/dev/null | sed -n '1s/ version//p; s/^TLS\/SSL library: //p' | paste -sd' ' || true)"
  ((caller_had_ssl_env)) &&
    echo "- note: the caller's environment sets ${SSL_ENV[*]}; only mailsend-sslenv keeps it"
  echo
  echo "| tool | median ms | mean ms | CPU ms (user+sys) | mailsend / tool (median) |"
  echo "|---|---:|---:|---:|---:|"
  for tool in "${timed[@]}"; do
    read -r med mean cpu < <(stats "$tool")
    echo "| $tool | $med | $mean | $cpu | $(ratio "$ms_median" "$med") |"
  done
  echo
  if [[ " ${timed[*]} " == *" curl "* ]]; then
    read -r curl_median _ _ < <(stats curl)
    r=$(ratio "$ms_median" "$curl_median")
    verdict=$(awk -v r="$r" 'BEGIN { print (r <= 1.0 ? "target met" : "target missed") }')
    echo "mailsend/curl = $r ($verdict: mailsend at or below curl)"
  else
    echo "mailsend/curl = n/a (curl was skipped)"
  fi
  echo
  echo "mailsend-sslenv: mailsend with ${SSL_ENV[*]} (src/tls.rs: a distribution bundle inside the hashed directory in use is not loaded again)."
  echo
  echo "Commands (run in a scratch directory with a scratch HOME; hyperfine runs those"
  echo "without '<' directly, msmtp's with sh -c):"
  echo
  for tool in "${timed[@]}"; do echo "    $(shell_line "$tool" "$CA")"; done
} >"$OUT/results.md"

# The same table for the terminal, without the markdown.
echo
table=$(sed -n '/^| tool/,/^$/p' "$OUT/results.md" | grep -v '^|---' | sed 's/^| //; s/ |$//')
if command -v column >/dev/null; then column -t -s '|' <<<"$table"; else echo "$table"; fi
grep '^mailsend/curl' "$OUT/results.md"
echo "(details: ${OUT#"$ROOT"/}/results.md; timing took ${elapsed_s}s)"
