//! Integration tests: the built `mailsend` binary against in-process SMTP
//! servers on 127.0.0.1 that record exactly what they received.

mod cases;
mod support;
