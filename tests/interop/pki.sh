#!/usr/bin/env bash
# Generates the test PKI for the interop suite with the openssl CLI only.
#   pki.sh DIR
# DIR/ca.pem            test CA (what mailsend is told to trust with --ca-file)
# DIR/server.{pem,key}  localhost + 127.0.0.1, signed by the test CA (Postfix, good scripted TLS)
# DIR/wronghost.*       wrong.example.test only, signed by the test CA
# DIR/expired.*         localhost + 127.0.0.1, signed by the test CA, valid Jan 2020 only
# DIR/rogue.*           localhost + 127.0.0.1, signed by a second CA nobody trusts
# Each *.pem is the leaf certificate; *-chain.pem is the leaf followed by its CA.
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"

cat > openssl.cnf <<'CNF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ ca ]
default_ca = testca
[ testca ]
database = db/index.txt
new_certs_dir = db
rand_serial = yes
default_md = sha256
policy = anything
unique_subject = no
email_in_dn = no
[ anything ]
commonName = supplied
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $ENV::SAN
CNF
export OPENSSL_CONF=$PWD/openssl.cnf SAN=DNS:unused
rm -rf db && mkdir db && : > db/index.txt

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

make_ca() { # name subject
    newkey "$1.key"
    openssl req -new -x509 -key "$1.key" -subj "/CN=$2" -days 30 \
        -extensions v3_ca -out "$1.pem"
}

make_leaf() { # name ca cn san [extra openssl ca args...]
    local name=$1 ca=$2 cn=$3
    SAN=$4
    export SAN
    shift 4
    newkey "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    openssl ca -batch -notext -config openssl.cnf -extensions leaf \
        -cert "$ca.pem" -keyfile "$ca.key" -in "$name.csr" -out "$name.pem" \
        "$@" 2>/dev/null
    cat "$name.pem" "$ca.pem" > "$name-chain.pem"
    rm -f "$name.csr"
}

make_ca ca "mailsend interop test CA"
make_ca rogueca "mailsend interop rogue CA"
make_leaf server ca localhost "DNS:localhost,IP:127.0.0.1" -days 30
make_leaf wronghost ca wrong.example.test "DNS:wrong.example.test" -days 30
make_leaf expired ca localhost "DNS:localhost,IP:127.0.0.1" \
    -startdate 20200101000000Z -enddate 20200201000000Z
make_leaf rogue rogueca localhost "DNS:localhost,IP:127.0.0.1" -days 30
chmod 0644 ./*.pem
chmod 0640 ./*.key
chgrp postfix ./*.key 2>/dev/null || true
