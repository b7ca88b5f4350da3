#!/usr/bin/env bash
# Peak memory (max RSS) and wall time of sending one message with a large
# attachment: mailsend (a direct send, and `outbox flush` of the same
# message queued), msmtp and curl (both fed the message mailsend composed),
# and s-nail (composing and sending itself), same sink, same run.
#
# The sink is a plain SMTP server on 127.0.0.1 that discards what it gets
# (python3), so what is measured is the client alone.
#
# Usage: scripts/bench-memory.sh
#   BENCH_MIB=50        attachment size in MiB
#   MAILSEND_BIN=path   measure this mailsend binary instead of building one
# As root, installs missing msmtp, curl and s-nail with apt-get.
# Traffic goes to 127.0.0.1 only; the recipient is in example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MIB=${BENCH_MIB:-50}
MAILSEND_OVERRIDE=${MAILSEND_BIN:-}
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' || true)

if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
  for pkg in msmtp curl s-nail time; do
    dpkg -s "$pkg" >/dev/null 2>&1 ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 || true
  done
fi
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }
if [[ -n $MAILSEND_OVERRIDE ]]; then
  MAILSEND=$(realpath "$MAILSEND_OVERRIDE")
else
  cargo build --release --quiet
  MAILSEND=$ROOT/target/release/mailsend
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench-mem.XXXXXX")
SINK_PID=
cleanup() {
  [[ -n $SINK_PID ]] && kill "$SINK_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
mkdir home
cat >sink.py <<'EOF'
import socket, sys, threading
def handle(c):
    f = c.makefile('rb')
    send = lambda s: c.sendall(s.encode() + b'\r\n')
    send('220 sink ESMTP')
    while (line := f.readline()):
        cmd = line.strip().upper()
        if cmd.startswith(b'EHLO'):
            c.sendall(b'250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 4000000000\r\n')
        elif cmd.startswith(b'HELO'):
            send('250 sink')
        elif cmd == b'DATA':
            send('354 go')
            while (l := f.readline()) and l != b'.\r\n':
                pass
            send('250 queued')
        elif cmd == b'QUIT':
            send('221 bye')
            break
        else:
            send('250 ok')
    c.close()
s = socket.socket()
s.bind(('127.0.0.1', 0))
s.listen(5)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
EOF
python3 sink.py >port &
SINK_PID=$!
for _ in $(seq 50); do [[ -s port ]] && break; sleep 0.1; done
PORT=$(cat port)
head -c $((MIB * 1024 * 1024)) /dev/urandom >big.bin

ENVS=(env -i PATH="$PATH" HOME="$WORK/home" MAILSEND_CONFIG=/dev/null MAILSEND_HOST=127.0.0.1
  MAILSEND_TLS=none MAILSEND_FROM=me@example.com)
# Prints "max_rss_kib wall_seconds" of a command; fails if it fails.
measure() {
  /usr/bin/time -f '%M %e' -o time.out "$@" >/dev/null 2>cmd.err </dev/null || { tail -3 cmd.err >&2; return 0; }
  cat time.out
}
rows=()
# A row for a tool whose measurement succeeded ("" when it failed: skipped).
row() {
  [[ -n $2 ]] || { echo "skipping $1: it failed" >&2; return 0; }
  rows+=("| $1 | $(awk '{ printf "%.1f MiB | %.2f s", $1 / 1024, $2 }' <<<"$2") |")
}

row "mailsend (compose and send)" "$(measure "${ENVS[@]}" MAILSEND_PORT="$PORT" "$MAILSEND" \
  --to a@example.com --subject big --body x --attach big.bin)"
"${ENVS[@]}" MAILSEND_PORT=1 "$MAILSEND" --queue --to a@example.com --subject big --body x \
  --attach big.bin 2>/dev/null
row "mailsend outbox flush (the same message, queued)" "$(measure "${ENVS[@]}" \
  MAILSEND_PORT="$PORT" "$MAILSEND" outbox flush --all)"
"${ENVS[@]}" "$MAILSEND" --dry-run --to a@example.com --subject big --body x --attach big.bin \
  >msg.eml 2>/dev/null
if command -v msmtp >/dev/null; then
  printf 'account default\nhost 127.0.0.1\nport %s\ntls off\nauth off\nfrom me@example.com\n' "$PORT" >msmtprc
  chmod 600 msmtprc
  row "msmtp (the composed message on stdin)" "$(/usr/bin/time -f '%M %e' -o time.out \
    msmtp -C msmtprc a@example.com <msg.eml >/dev/null 2>cmd.err && cat time.out || true)"
fi
if command -v curl >/dev/null; then
  row "curl (the composed message as a file)" "$(measure curl -sS --url "smtp://127.0.0.1:$PORT" \
    --mail-from me@example.com --mail-rcpt a@example.com --upload-file msg.eml)"
fi
if command -v s-nail >/dev/null; then
  row "s-nail (composes and sends)" "$(measure env -i HOME="$WORK/home" s-nail -:/ \
    -S v15-compat -S mta="smtp://127.0.0.1:$PORT" -S smtp-auth=none -r me@example.com \
    -s big -a big.bin a@example.com)"
fi
{
  echo "# Peak memory: one message with a $MIB MiB attachment (same sink, same run)"
  echo
  echo "| tool | peak RSS | wall |"
  echo "|---|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$ROOT/target/bench-memory.md"
