#!/usr/bin/env bash
# A private, throw-away Postfix instance for the interop suite.
#   postfix.sh start DIR PKI SUBMISSION_PORT SMTPS_PORT PLAIN_PORT LIMITS_PORT LOGIN_PORT [OAUTH_PORT DOVECOT_SOCKET]
#   postfix.sh stop DIR
# Listens on 127.0.0.1 only; delivers every recipient in example.test into
# the one Maildir DIR/mail/inbox/ (each copy carries Delivered-To); relays
# nowhere and looks nothing up in DNS. SASL: Cyrus with a private sasldb
# holding sender@example.test (password in DIR/password).
#
#   SUBMISSION_PORT  STARTTLS required before AUTH; AUTH required to send
#   SMTPS_PORT       implicit TLS (wrapper mode); AUTH required to send
#   PLAIN_PORT       no TLS, no AUTH; 127.0.0.1 may send (local relay)
#   LIMITS_PORT      like submission, with smtpd_recipient_limit=2 and
#                    message_size_limit=100000
#   LOGIN_PORT       like submission, offering AUTH LOGIN only
#   OAUTH_PORT       like submission, with Dovecot as the SASL server
#                    (dovecot.sh: XOAUTH2 and OAUTHBEARER, tokens checked
#                    by introspection), when DOVECOT_SOCKET is given
set -euo pipefail

PF_SBIN=/usr/lib/postfix/sbin

stop() {
    local dir=$1 conf=$1/etc pid
    [ -f "$conf/main.cf" ] || return 0
    if "$PF_SBIN/master" -c "$conf" -t 2>/dev/null; then
        return 0 # not running
    fi
    postfix -c "$conf" stop >/dev/null 2>&1 || true
    # master -t answers at once; `postfix status` can take seconds.
    for _ in $(seq 50); do
        "$PF_SBIN/master" -c "$conf" -t 2>/dev/null && return 0
        sleep 0.1
    done
    pid=$(head -1 "$dir/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
    if [ -n "$pid" ]; then
        kill -9 "$pid" 2>/dev/null || true
    fi
}

start() {
    local dir=$1 pki=$2 p_sub=$3 p_smtps=$4 p_plain=$5 p_lim=$6 p_login=$7
    local p_oauth=${8:-} dovecot_socket=${9:-} oauth_listener=""
    if [ -n "$dovecot_socket" ]; then
        oauth_listener="127.0.0.1:$p_oauth inet n - n - - smtpd
  -o syslog_name=postfix/oauth
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=$dovecot_socket
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
    fi
    local conf=$dir/etc uid gid
    uid=$(id -u postfix) gid=$(id -g postfix)
    mkdir -p "$conf/sasl" "$dir/queue" "$dir/data" "$dir/log" "$dir/mail"
    chmod 0755 "$dir" "$conf" "$conf/sasl" "$dir/log"
    chown postfix:postfix "$dir/data" "$dir/mail"

    cat > "$conf/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.interop.invalid
mydomain = interop.invalid
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file_prefixes = $dir/log
maillog_file = $dir/log/postfix.log
# Loopback clients count as local: without these Postfix would add
# Date/Message-ID/To itself and hide what mailsend sent.
local_header_rewrite_clients =
always_add_missing_headers = no
# Relay nowhere, resolve nothing.
relayhost =
default_transport = error:5.7.1 interop test relays nowhere
relay_transport = error:5.7.1 interop test relays nowhere
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
biff = no
notify_classes =
delay_warning_time = 0
# Every recipient in example.test lands in one Maildir.
virtual_mailbox_domains = example.test
virtual_mailbox_base = $dir/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
message_size_limit = 20000000
virtual_mailbox_limit = 0
# TLS and SASL (used by the listeners that enable them).
smtpd_tls_chain_files = $pki/server.key, $pki/server-chain.pem
smtpd_tls_security_level = none
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = no
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
# Debian's Postfix reads \$config_directory/sasl/smtpd.conf whatever this says.
cyrus_sasl_config_path = $conf/sasl
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = yes
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = check_recipient_access regexp:$conf/recipient_access
smtpd_end_of_data_restrictions = check_sender_access regexp:$conf/sender_eod_access
CF

    cat > "$conf/master.cf" <<CF
# Private master.cf: chroot n everywhere (a chrooted smtpd cannot see the sasldb).
127.0.0.1:$p_sub inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$p_smtps inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$p_plain inet n - n - - smtpd
  -o syslog_name=postfix/plain
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
  -o smtpd_relay_restrictions=permit_mynetworks,reject
127.0.0.1:$p_lim inet n - n - - smtpd
  -o syslog_name=postfix/limits
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_limit=2
  -o message_size_limit=100000
127.0.0.1:$p_login inet n - n - - smtpd
  -o syslog_name=postfix/login
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_path=smtpd-login
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
$oauth_listener
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF

    cat > "$conf/recipient_access" <<'CF'
/^refuse550@example\.test$/   550 5.1.1 no such mailbox (interop)
/^defer451@example\.test$/    451 4.2.0 try again later (interop)
CF
    cat > "$conf/sender_eod_access" <<'CF'
/^reject-eod@example\.test$/  554 5.7.1 Message refused after end of data (interop policy)
CF

    # SASL: Cyrus auxprop with a private sasldb.
    local password
    # A "~" after every two characters: mailsend hides any 4 characters of
    # the password from server replies, and no reply has a "~", so no word
    # of a reply is ever taken for a piece of it.
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | sed 's/../&~/g')
    printf '%s' "$password" > "$dir/password"
    chmod 0600 "$dir/password"
    cat > "$conf/sasl/smtpd.conf" <<CF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $conf/sasl/sasldb2
CF
    sed 's/^mech_list:.*/mech_list: LOGIN/' "$conf/sasl/smtpd.conf" > "$conf/sasl/smtpd-login.conf"
    rm -f "$conf/sasl/sasldb2"
    printf '%s' "$password" | saslpasswd2 -f "$conf/sasl/sasldb2" -c -p -u example.test sender
    chown root:postfix "$conf/sasl/sasldb2"
    chmod 0640 "$conf/sasl/sasldb2"

    # Postfix sleeps ~1 s when main.cf or a table is younger than 1 s.
    touch -d '-10 seconds' "$conf"/* "$conf/sasl"/*

    : > "$dir/log/postfix.log"
    postfix -c "$conf" check
    postfix -c "$conf" start
    # master -w (inside start) returns once master is up; make sure.
    if "$PF_SBIN/master" -c "$conf" -t 2>/dev/null; then
        echo "postfix.sh: master is not running; log follows" >&2
        tail -30 "$dir/log/postfix.log" >&2
        return 1
    fi
}

case ${1:-} in
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
*) echo "usage: $0 start DIR PKI P_SUB P_SMTPS P_PLAIN P_LIMITS P_LOGIN [P_OAUTH DOVECOT_SOCKET] | stop DIR" >&2; exit 64 ;;
esac
