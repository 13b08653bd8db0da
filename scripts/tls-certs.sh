#!/usr/bin/env bash
# tls-certs.sh DIR : makes the certificates the TLS tests and the benchmark use,
# with openssl, into DIR (P-256 keys, valid two days):
#   ca.crt/.key          the test CA
#   other-ca.crt/.key    a CA nobody trusts (the wrong-CA test)
#   server.crt/.key      for localhost and 127.0.0.1, signed by ca
#   client.crt/.key      a client certificate signed by ca (mutual TLS)
#   wrong-name.crt/.key  for wrong.example.invalid only, signed by ca
#   expired.crt/.key     for localhost and 127.0.0.1, expired in 2020, signed by ca
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"

subject() { echo "/O=BaldurCache tests/CN=$1"; }
new_key() { openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "$@" 2>/dev/null; }

# ca NAME : a self-signed CA.
ca() { new_key -x509 -keyout "$1.key" -out "$1.crt" -days 2 -subj "$(subject "$1")"; }

# leaf NAME CN SAN [NOT_BEFORE NOT_AFTER] : a certificate signed by ca.
leaf() {
    new_key -keyout "$1.key" -out "$1.csr" -subj "$(subject "$2")"
    printf 'subjectAltName=%s\n' "$3" >"$1.ext"
    if [ $# -ge 5 ]; then
        # `openssl x509 -req` cannot backdate; `openssl ca` can, with a minimal database.
        mkdir -p ca-db
        : >ca-db/index.txt
        echo 01 >ca-db/serial
        cat >ca-db/ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = $PWD/ca-db
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
CNF
        openssl ca -batch -config ca-db/ca.cnf -cert ca.crt -keyfile ca.key -in "$1.csr" -out "$1.crt" \
            -startdate "$4" -enddate "$5" -extfile "$1.ext" -notext 2>/dev/null
    else
        openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
            -days 2 -extfile "$1.ext" 2>/dev/null
    fi
    rm -f "$1.csr" "$1.ext"
}

ca ca
ca other-ca
leaf server localhost 'DNS:localhost,IP:127.0.0.1'
leaf client baldur-client 'DNS:baldur-client'
leaf wrong-name wrong.example.invalid 'DNS:wrong.example.invalid'
leaf expired localhost 'DNS:localhost,IP:127.0.0.1' 20200101000000Z 20200102000000Z
chmod 600 ./*.key
