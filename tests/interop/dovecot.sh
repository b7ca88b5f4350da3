#!/usr/bin/env bash
# A private, throw-away Dovecot instance for the interop suite: only its
# SASL auth service, for Postfix (smtpd_sasl_type = dovecot), checking
# OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER) by introspection.
#   dovecot.sh start DIR INTROSPECTION_URL
#   dovecot.sh stop DIR
# The auth socket for Postfix is DIR/auth-client; the log DIR/dovecot.log.
set -euo pipefail

stop() {
    local dir=$1
    [ -f "$dir/dovecot.conf" ] || return 0
    doveadm -c "$dir/dovecot.conf" stop >/dev/null 2>&1 || true
    local pid
    pid=$(cat "$dir/run/master.pid" 2>/dev/null || true)
    for _ in $(seq 50); do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

start() {
    local dir=$1 url=$2
    mkdir -p "$dir/run" "$dir/state"
    chmod 0755 "$dir" "$dir/run"
    cat > "$dir/oauth2.conf.ext" <<CF
introspection_mode = post
introspection_url = $url
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
CF
    cat > "$dir/dovecot.conf" <<CF
# Only the auth service: no IMAP, no POP3, no TLS of its own.
protocols =
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
ssl = no
auth_mechanisms = plain login xoauth2 oauthbearer
disable_plaintext_auth = no
# Failed logins on purpose must not be slowed down (auth penalty up to 10 s).
auth_failure_delay = 0
auth_verbose = yes
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $dir/oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener $dir/auth-client {
    mode = 0666
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
CF
    : > "$dir/dovecot.log"
    # The daemon must not keep the caller's stdout open: run.sh reads it
    # through $(...), which would wait for it to exit.
    if ! dovecot -c "$dir/dovecot.conf" </dev/null >"$dir/start.log" 2>&1; then
        cat "$dir/start.log" >&2
        return 1
    fi
    for _ in $(seq 100); do
        [ -S "$dir/auth-client" ] && return 0
        sleep 0.05
    done
    echo "dovecot.sh: no auth socket; log follows" >&2
    tail -20 "$dir/dovecot.log" >&2
    return 1
}

case ${1:-} in
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*) echo "usage: $0 start DIR INTROSPECTION_URL | stop DIR" >&2; exit 64 ;;
esac
