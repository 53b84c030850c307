#!/bin/sh
# Test-only keys for src/auth/jwt.rs, generated locally with the openssl CLI.
# `sh gen.sh keys` makes new key pairs; `sh gen.sh` (re)derives jwks.json from the public PEMs.
set -eu
cd "$(dirname "$0")"
if [ "${1:-}" = keys ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa_private.pem
    openssl pkey -in rsa_private.pem -pubout -out rsa_public.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec_private.pem
    openssl pkey -in ec_private.pem -pubout -out ec_public.pem
    openssl genpkey -algorithm ED25519 -out ed_private.pem
    openssl pkey -in ed_private.pem -pubout -out ed_public.pem
fi
b64url() { basenc --base64url -w0 | tr -d '='; }
n=$(openssl rsa -pubin -in rsa_public.pem -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)
e=AQAB # 65537, openssl's default public exponent
x=$(openssl pkey -pubin -in ec_public.pem -outform DER | tail -c 64 | head -c 32 | b64url)
y=$(openssl pkey -pubin -in ec_public.pem -outform DER | tail -c 32 | b64url)
ed=$(openssl pkey -pubin -in ed_public.pem -outform DER | tail -c 32 | b64url)
cat > jwks.json <<JSON
{"keys":[
 {"kty":"RSA","use":"sig","alg":"RS256","kid":"rsa1","n":"$n","e":"$e"},
 {"kty":"EC","use":"sig","kid":"ec1","crv":"P-256","x":"$x","y":"$y"},
 {"kty":"OKP","kid":"ed1","crv":"Ed25519","x":"$ed"},
 {"kty":"RSA","use":"enc","kid":"rsa-enc","n":"$n","e":"$e"},
 {"kty":"oct","kid":"hmac1","k":"c2VjcmV0"},
 {"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"}
]}
JSON
