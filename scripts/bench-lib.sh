# Shared by the benchmark scripts: builds (or takes MAILSEND_BIN) the
# mailsend binary and the example SMTP sink; sets MAILSEND, SINK, PROXY.
# Needs ROOT (the checkout) and MAILSEND_OVERRIDE (MAILSEND_BIN or empty).
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
