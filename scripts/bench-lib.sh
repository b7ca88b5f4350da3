# Shared by the benchmark scripts.
#
# build_bench_tools: builds (or takes MAILSEND_BIN) the mailsend binary and
# the example SMTP sink; sets MAILSEND, SINK, PROXY. Needs ROOT (the
# checkout) and MAILSEND_OVERRIDE (MAILSEND_BIN or empty).
build_bench_tools() {
  cargo build --release --quiet --example smtp_sink
  if [[ -n $MAILSEND_OVERRIDE ]]; then
    MAILSEND=$(realpath "$MAILSEND_OVERRIDE")
  else
    cargo build --release --quiet
    MAILSEND=$ROOT/target/release/mailsend
  fi
  SINK=$ROOT/target/release/examples/smtp_sink
  PROXY=$ROOT/scripts/delay-proxy.py
}

# write_msmtprc FILE PORT CA FROM: an msmtp configuration (mode 0600: it
# holds the password $PASS) for the sink's user bench@example.com on
# 127.0.0.1:PORT, STARTTLS, trusting CA, AUTH PLAIN.
write_msmtprc() {
  (
    umask 077
    cat >"$1" <<EOF
account bench
host 127.0.0.1
port $2
tls on
tls_starttls on
tls_trust_file $3
auth plain
user bench@example.com
password $PASS
from $4
account default : bench
EOF
  )
}
