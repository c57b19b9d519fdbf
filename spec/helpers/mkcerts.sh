#!/bin/sh
# spec/helpers/mkcerts.sh DIR -- makes the certificates the TLS specs and
# docs/tls.md use, with the openssl command, in DIR (created if needed).
# Nothing made here is committed.  EC P-256 keys: quick to make and to use.
#
#   ca.pem ca.key             a private CA ("spindle test CA")
#   server.pem server.key     localhost, 127.0.0.1, ::1 -- signed by the CA
#   wrongname.pem/.key        wrong.example -- signed by the CA
#   expired.pem/.key          localhost, 127.0.0.1, valid only in 2020
#   client.pem client.key     "spindle client", for client authentication
#   self.pem self.key         localhost, self-signed
#   other-ca.pem              a second CA that signed nothing here
#   cadir/                    ca.pem under its hash name (a CA directory)
set -eu
d=${1:?usage: mkcerts.sh DIR}
mkdir -p "$d"
cd "$d"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
          -out "$1" 2>/dev/null; }

ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "$2" -days 3650 -out "$1.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

leaf() { # name subject san extended-key-usage
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$4"
    if [ -n "$3" ]; then echo "subjectAltName=$3"; fi
  } >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -days 825 -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca "/CN=spindle test CA"
ca other-ca "/CN=spindle other CA"
leaf server "/CN=localhost" "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
leaf wrongname "/CN=wrong.example" "DNS:wrong.example" serverAuth
leaf client "/CN=spindle client" "" clientAuth

# expired: `openssl ca` is the one that takes fixed dates
mkdir -p ca.db
: >ca.db/index.txt
echo 1000 >ca.db/serial
cat >ca.cnf <<'EOF'
[ca]
default_ca = test
[test]
database = ca.db/index.txt
serial = ca.db/serial
new_certs_dir = ca.db
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
EOF
key expired.key
openssl req -new -key expired.key -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out expired.csr \
  2>/dev/null
openssl ca -batch -config ca.cnf -notext -startdate 20200101000000Z \
  -enddate 20200201000000Z -in expired.csr -out expired.pem 2>/dev/null
rm -rf ca.db ca.cnf expired.csr

key self.key
openssl req -x509 -new -key self.key -subj "/CN=localhost" -days 365 \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -out self.pem \
  2>/dev/null

mkdir -p cadir
cp ca.pem "cadir/$(openssl x509 -hash -noout -in ca.pem).0"
rm -f ca.srl
