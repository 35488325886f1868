#!/bin/sh
# A self-signed certificate for popd (-c, -k), good for tests and for
# clients told to trust it.  For a certificate clients trust by themselves,
# use acme-client(1) on OpenBSD or certbot on Linux and give popd the full
# chain and the key.
# RSA, which every POP3 client and smtpd (sharing it in examples/smtpd.conf)
# can use.
#   usage: mkcert.sh hostname certfile keyfile
set -eu
[ $# -eq 3 ] || { echo "usage: $0 hostname certfile keyfile" >&2; exit 64; }
host=$1 cert=$2 key=$3
umask 077
openssl req -x509 -newkey rsa:3072 -nodes \
    -days 825 -subj "/CN=$host" -addext "subjectAltName=DNS:$host" \
    -keyout "$key" -out "$cert" 2>/dev/null
chmod 644 "$cert"
chmod 600 "$key"
