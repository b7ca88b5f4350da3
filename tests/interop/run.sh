#!/usr/bin/env bash
# mailsend interop suite: the real binary against a private Postfix
# (submission with STARTTLS + AUTH, implicit TLS with AUTH, a plain local
# relay port; and an OAuth2 port whose SASL server is a private Dovecot
# checking XOAUTH2/OAUTHBEARER tokens against suite.py's introspection
# endpoint), a recording SMTP server and a scripted fault server.
# Everything listens on 127.0.0.1; every recipient is in example.test.
#
# Usage (as root, Debian 12):  tests/interop/run.sh
#   MAILSEND_BIN=path      binary to test (default: cargo build --release)
#   INTEROP_KEEP=1         keep the temporary directory (Postfix log, Maildir)
#   INTEROP_MATRIX=path    where to write the fault matrix (default: in the
#                          temporary directory; tests/interop/MATRIX.md is
#                          the copy for docs/DEVELOPMENT.md)
#   INTEROP_SYSTEM_MODE=divert  replace /usr/sbin/sendmail, /etc/mailsend and
#                          root's crontab for the run instead of using a private
#                          mount namespace (see system.sh; the default falls
#                          back to divert only where namespaces are not allowed)
#
# suite.py holds the checks against Postfix, the recording server and the
# fault server; campaign.py those of `mailsend bulk` (a 240-row campaign
# through submission checked copy by copy, kill -9 and resume, --rate);
# check.py those of `mailsend check`;
# system.py those with real system programs: Debian's cron
# (MAILTO mail through mailsend as /usr/sbin/sendmail), git send-email,
# HOME unset with /etc/mailsend/config.toml, and the outbox. Installs
# postfix, sasl2-bin, libsasl2-modules, openssl, cron, git, git-email,
# libmailtools-perl and dovecot-core when missing. Every system path is put back on exit
# (system.sh stop), and by the next run if this one was killed.
#
# Prints `ok - name` / `not ok - name: details` per check, the duration,
# and last `N passed, M failed` (plus `, K expected failures` when a check
# marked as failing because of a known mailsend bug, printed as
# `not ok - ... # TODO`, failed as expected; such a check passing is a failure). Exits non-zero if anything failed or
# Postfix could not be started.
set -u
# Durations from the boot clock: the wall clock of a VM can jump.
uptime_ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
start_ms=$(uptime_ms)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
setup_passed=0
setup_failed=0

ok() { echo "ok - $1"; setup_passed=$((setup_passed + 1)); }
not_ok() { echo "not ok - $1: $2"; setup_failed=$((setup_failed + 1)); }

finish() {
    local passed=$((setup_passed + ${1:-0})) failed=$((setup_failed + ${2:-0})) xfail=${3:-0}
    local ms=$(($(uptime_ms) - start_ms))
    if [ "${INTEROP_KEEP:-}" = 1 ] && [ -n "${work:-}" ]; then
        echo "# kept $work (INTEROP_KEEP=1)"
    fi
    printf 'duration: %d.%01ds\n' $((ms / 1000)) $((ms % 1000 / 100))
    if [ "$xfail" -gt 0 ]; then
        echo "$passed passed, $failed failed, $xfail expected failures (known mailsend bugs, see the # TODO lines)"
    else
        echo "$passed passed, $failed failed"
    fi
    [ "$failed" -eq 0 ]
    exit $?
}

# ---------------------------------------------------------------- packages
if [ "$(id -u)" -ne 0 ]; then
    not_ok "running as root" "Postfix needs root to start"
    finish
fi

# Installs the Debian packages among "$@" that are missing; returns non-zero
# (the log in /tmp/mailsend-interop-apt.log) when apt-get failed.
missing_pkgs() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}
install_pkgs() {
    local pkgs
    mapfile -t pkgs < <(missing_pkgs "$@")
    [ ${#pkgs[@]} -eq 0 ] && return 0
    echo "# installing ${pkgs[*]}"
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; }
    if ! { apt_install || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt_install; }; } \
        > /tmp/mailsend-interop-apt.log 2>&1 </dev/null; then
        not_ok "install ${pkgs[*]}" "apt-get failed, see /tmp/mailsend-interop-apt.log: $(tail -3 /tmp/mailsend-interop-apt.log | tr '\n' ' ')"
        return 1
    fi
}
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
install_pkgs postfix sasl2-bin libsasl2-modules openssl || finish
# For the system checks (system.py): Debian's cron, git send-email. Without
# them only those checks fail. git-email needs Mail::Address (libmailtools-perl),
# which it only recommends. dovecot-core: the SASL server that checks OAuth2
# tokens (dovecot.sh); without it only the OAuth2 checks fail.
install_pkgs cron git git-email libmailtools-perl dovecot-core || true
# For signing.py: Debian's dkimpy (and PyNaCl for Ed25519), the independent
# DKIM verifier. Without them only the DKIM checks fail.
install_pkgs python3-dkim python3-nacl || true
if ! command -v python3 >/dev/null; then
    not_ok "python3 available" "python3 not found"
    finish
fi

# ---------------------------------------------------------------- binary
if [ -n "${MAILSEND_BIN:-}" ]; then
    bin=$MAILSEND_BIN
else
    echo "# building mailsend (cargo build --release)"
    if ! (cd "$repo" && cargo build --release --quiet) </dev/null >&2; then
        not_ok "cargo build --release" "build failed"
        finish
    fi
    bin=$repo/target/release/mailsend
fi
bin=$(readlink -f "$bin")
if [ ! -x "$bin" ]; then
    not_ok "mailsend binary" "$bin is not an executable file"
    finish
fi

# ---------------------------------------------------------------- workspace
work=$(mktemp -d /tmp/mailsend-interop.XXXXXX)
chmod 0755 "$work" # Postfix daemons (user postfix) must reach the queue, sasldb and Maildir
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    "$here/system.sh" stop $$ >/dev/null 2>&1 || true
    "$here/postfix.sh" stop "$work/postfix" >/dev/null 2>&1 || true
    "$here/dovecot.sh" stop "$work/dovecot" >/dev/null 2>&1 || true
    [ "${INTEROP_KEEP:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! out=$("$here/pki.sh" "$work/pki" 2>&1); then
    not_ok "test PKI generated with openssl" "$(echo "$out" | tail -3 | tr '\n' ' ')"
    finish
fi
ok "test PKI generated with openssl (CA, localhost, wrong host, expired, rogue CA)"

read -r p_sub p_smtps p_plain p_limits p_login p_oauth p_introspect < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
')

# Dovecot, the SASL server of Postfix's OAuth2 port: it checks each token
# with the introspection endpoint suite.py serves on $p_introspect.
dovecot_socket=
oauth_ports=
if ! command -v dovecot >/dev/null; then
    not_ok "private Dovecot (OAuth2 SASL) started" "dovecot not installed (dovecot-core)"
elif out=$("$here/dovecot.sh" start "$work/dovecot" "http://127.0.0.1:$p_introspect/introspect" 2>&1 </dev/null); then
    dovecot_socket=$work/dovecot/auth-client
    oauth_ports=$p_oauth
    ok "private Dovecot $(dovecot --version | cut -d' ' -f1) started (SASL for Postfix: XOAUTH2, OAUTHBEARER; tokens by introspection)"
else
    not_ok "private Dovecot (OAuth2 SASL) started" "$(echo "$out" | tail -5 | tr '\n' ' ')"
fi

if ! out=$("$here/postfix.sh" start "$work/postfix" "$work/pki" \
    "$p_sub" "$p_smtps" "$p_plain" "$p_limits" "$p_login" \
    ${dovecot_socket:+"$p_oauth" "$dovecot_socket"} 2>&1 </dev/null); then
    not_ok "private Postfix instance started" "$(echo "$out" | tail -15 | tr '\n' ' ')"
    finish
fi
# Wait until every listener accepts connections.
# shellcheck disable=SC2086 # $oauth_ports: one port or none
if ! python3 - "$p_sub" "$p_smtps" "$p_plain" "$p_limits" "$p_login" $oauth_ports <<'PY'; then
import socket, sys, time
deadline = time.monotonic() + 10
for port in map(int, sys.argv[1:]):
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"port {port} not listening")
            time.sleep(0.05)
PY
    not_ok "private Postfix instance started" "listeners not up; $(tail -5 "$work/postfix/log/postfix.log" | tr '\n' ' ')"
    finish
fi
pf_version=$(postconf -c "$work/postfix/etc" -h mail_version 2>/dev/null || echo unknown)
ok "private Postfix $pf_version started (submission $p_sub, smtps $p_smtps, plain $p_plain, limits $p_limits, login $p_login${oauth_ports:+, oauth $p_oauth})"

# Python's smtplib, not mailsend, proves the instance delivers (plain port,
# and submission with STARTTLS + AUTH) before any mailsend check runs.
if ! out=$(timeout 60 python3 "$here/smoke.py" "$work/postfix/mail/inbox" "$work/pki/ca.pem" \
    "$work/postfix/password" "$p_plain" "$p_sub" 2>&1 </dev/null); then
    not_ok "Postfix delivers smtplib's messages (plain port; submission with STARTTLS + AUTH)" \
        "$(echo "$out" | tail -3 | tr '\n' ' ') log: $(tail -5 "$work/postfix/log/postfix.log" | tr '\n' ' ')"
    finish
fi
ok "Postfix delivers smtplib's messages (plain port; submission with STARTTLS + AUTH)"

# ---------------------------------------------------------------- system paths
# Debian's cron mails a job's output with /usr/sbin/sendmail (built in, no
# option to change it), reading root's crontab; mailsend with HOME unset reads
# /etc/mailsend/config.toml. system.sh gives cron and those checks these paths
# (see there); cron starts now, so that its first run (at the next full minute)
# overlaps suite.py, and system.py checks the mail at the end.
sys=$work/system
mkdir -p "$sys"
cron_token=$(head -c 9 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')
cat > "$sys/config.toml" <<CF
# /etc/mailsend/config.toml during the interop suite (tests/interop/system.sh)
[aliases]
root = "cron-target@example.test"

[accounts.system]
default = true
host = "127.0.0.1"
port = $p_sub
tls = "starttls"
user = "sender@example.test"
password = "$(cat "$work/postfix/password")"
from = "Cron <cron@example.test>"
ca_file = "$work/pki/ca.pem"
timeout = "10s"
queue = true
outbox = "$sys/outbox"
log = "$sys/mailsend.log"
CF
# MAILSEND_FROM reaches the job; if it reached the mailer too, From would say so.
cat > "$sys/crontab" <<CF
# root's crontab during the interop suite (tests/interop/system.sh)
MAILTO=root
MAILSEND_FROM=Crontab Variable <crontab-var@example.test>
* * * * * echo "cron-output-$cron_token"; echo "job saw MAILSEND_FROM=\$MAILSEND_FROM"
CF
if out=$("$here/system.sh" start "$sys" "$bin" $$ 2>&1 </dev/null); then
    echo "$out" | grep '^#' || true
    ok "system paths ready for cron and the HOME-unset checks ($(tr '\n' ' ' < "$sys/status" | sed 's/cron_started=[0-9]* //; s/ $//'))"
else
    not_ok "system paths ready for cron and the HOME-unset checks" "$(echo "$out" | tail -3 | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- checks
# __pycache__ is ignored, but two .pyc files are tracked: leave them alone.
export PYTHONDONTWRITEBYTECODE=1
export INTEROP_BIN=$bin INTEROP_WORK=$work INTEROP_PKI=$work/pki
export INTEROP_MAILDIR=$work/postfix/mail/inbox INTEROP_POSTFIX_LOG=$work/postfix/log/postfix.log
export INTEROP_PASSWORD_FILE=$work/postfix/password INTEROP_POSTFIX_VERSION=$pf_version
export INTEROP_PORT_SUBMISSION=$p_sub INTEROP_PORT_SMTPS=$p_smtps INTEROP_PORT_PLAIN=$p_plain
export INTEROP_PORT_LIMITS=$p_limits INTEROP_PORT_LOGIN=$p_login
export INTEROP_PORT_OAUTH=$oauth_ports INTEROP_PORT_INTROSPECT=$p_introspect
export INTEROP_DOVECOT_LOG=$work/dovecot/dovecot.log
export INTEROP_COUNTS=$work/counts INTEROP_MATRIX=${INTEROP_MATRIX:-$work/MATRIX.md}
timeout 600 python3 "$here/suite.py" </dev/null
rc=$?
if [ ! -s "$work/counts" ]; then
    not_ok "suite.py ran to the end" "exited $rc without writing its counts"
    finish
fi
read -r s_passed s_failed < "$work/counts"
echo "# fault matrix written to $INTEROP_MATRIX"

# Campaigns (mailsend bulk): about 15 s.
export INTEROP_COUNTS=$work/counts-campaign
timeout 300 python3 "$here/campaign.py" </dev/null
rc3=$?
x_failed=0
if [ -s "$work/counts-campaign" ]; then
    read -r c_passed c_failed x_failed < "$work/counts-campaign"
    s_passed=$((s_passed + c_passed)) s_failed=$((s_failed + c_failed)) x_failed=${x_failed:-0}
else
    not_ok "campaign.py ran to the end" "exited $rc3 without writing its counts"
fi
[ "$rc" -ne 0 ] || rc=$rc3

# mailsend check (check.py): about 5 s.
export INTEROP_COUNTS=$work/counts-check
timeout 120 python3 "$here/check.py" </dev/null
rc4=$?
if [ -s "$work/counts-check" ]; then
    read -r k_passed k_failed < "$work/counts-check"
    s_passed=$((s_passed + k_passed)) s_failed=$((s_failed + k_failed))
else
    not_ok "check.py ran to the end" "exited $rc4 without writing its counts"
fi
[ "$rc" -ne 0 ] || rc=$rc4

export INTEROP_SYSTEM=$sys INTEROP_SYSTEM_SH=$here/system.sh INTEROP_CRON_TOKEN=$cron_token
export INTEROP_COUNTS=$work/counts-system
timeout 300 python3 "$here/system.py" </dev/null
rc2=$?
if [ -s "$work/counts-system" ]; then
    read -r y_passed y_failed < "$work/counts-system"
    s_passed=$((s_passed + y_passed)) s_failed=$((s_failed + y_failed))
else
    not_ok "system.py ran to the end" "exited $rc2 without writing its counts"
fi
[ "$rc" -ne 0 ] || rc=$rc2

# DKIM signing and inline images (signing.py): Debian's python3 has dkimpy.
export INTEROP_COUNTS=$work/counts-dkim
timeout 300 /usr/bin/python3 "$here/signing.py" </dev/null
rc4=$?
if [ -s "$work/counts-dkim" ]; then
    read -r d_passed d_failed < "$work/counts-dkim"
    s_passed=$((s_passed + d_passed)) s_failed=$((s_failed + d_failed))
else
    not_ok "signing.py ran to the end" "exited $rc4 without writing its counts"
fi
[ "$rc" -ne 0 ] || rc=$rc4
if [ "$s_failed" -gt 0 ] || [ "$rc" -ne 0 ] || [ "$setup_failed" -gt 0 ]; then
    echo "# Postfix log (last 20 lines):"
    tail -20 "$work/postfix/log/postfix.log" | sed 's/^/#   /'
fi
finish "$s_passed" "$s_failed" "$x_failed"
