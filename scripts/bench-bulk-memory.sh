#!/usr/bin/env bash
# Peak memory (max RSS) and wall time of `mailsend bulk --dry-run` checking
# a list of 100, 10,000, 100,000 and 1,000,000 rows (every row rendered
# and checked: subject, text, To, a header, List-* headers), and of
# writing one .eml per row for 10,000 rows with --out.
# Memory must not grow with the list (PRODUCT.md, "Campaigns").
#
# Usage: scripts/bench-bulk-memory.sh
#   MAILSEND_BIN=path   measure this mailsend binary instead of building one
#   BENCH_ROWS="100 100000"   list sizes to check
# Connects nowhere (a dry run); recipients are in example.com.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
while read -r var; do unset "$var"; done < <(compgen -e | grep '^MAILSEND_' | grep -v '^MAILSEND_BIN$' || true)
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 1; }
if [[ -n ${MAILSEND_BIN:-} ]]; then
  MAILSEND=$(realpath "$MAILSEND_BIN")
else
  cargo build --release --quiet
  MAILSEND=$ROOT/target/release/mailsend
fi
ROWS=${BENCH_ROWS:-100 10000 100000 1000000}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mailsend-bench-bulk.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
printf 'Dear {{ name }},\n\nyour customer number is {{ id }}.\n{%% if city %%}Greetings to {{ city }}!{%% endif %%}\n' >letter.txt

list() { # rows -> list.csv
  python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1])
with open("list.csv", "w", encoding="utf-8", newline="") as f:
    f.write("email,name,id,city\r\n")
    for i in range(1, n + 1):
        f.write(f'"Person {i} <p{i}@example.com>","Müller, Zoë {i}",{i},Köln\r\n')
PY
}

run() { # label, then mailsend arguments
  local label=$1; shift
  /usr/bin/time -f '%M %e' -o time.out env -i PATH="$PATH" HOME="$WORK" MAILSEND_CONFIG=/dev/null \
    "$MAILSEND" bulk --data list.csv --from "News <news@example.com>" \
    --subject 'Hello {{ name }}' --body-file letter.txt --header 'X-Customer: {{ id }}' \
    --unsubscribe-url 'https://example.com/u?id={{ id }}' --list-id 'News <news.example.com>' \
    --dry-run "$@" >/dev/null 2>err.out || { cat err.out >&2; exit 1; }
  read -r kib secs <time.out
  printf '%-34s %8s KiB peak RSS %8s s\n' "$label" "$kib" "$secs"
}

echo "mailsend: $MAILSEND"
for n in $ROWS; do
  list "$n"
  run "check $n rows, print the first"
done
list 10000
rm -rf out
run "check + write 10000 .eml (--out)" --out out
echo "files written: $(find out -name '*.eml' | wc -l)"
