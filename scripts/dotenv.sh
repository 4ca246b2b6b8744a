#!/bin/sh
# Write .env for Docker Compose from .env.example, with a fresh secret in every empty secret line;
# DEMO=1 also fills in the fake Google's client, for `make up-demo`.
# Needs only openssl and sed (no Python): the key format is TOKEN_ENCRYPTION_KEYS's keyid:base64url(32 bytes).
set -eu
cd "$(dirname "$0")/.."
demo=${DEMO:-}
out=${1:-.env}
if [ -e "$out" ]; then
  echo "error: $out exists; move it away first (it holds the key that decrypts every stored token)" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "error: openssl is needed to generate the secrets" >&2; exit 2; }
hex() { openssl rand -hex 24; }
key="k$(openssl rand -hex 4):$(openssl rand -base64 32 | tr '+/' '-_')"
umask 077
sed -e "s|^POSTGRES_PASSWORD=\$|POSTGRES_PASSWORD=$(hex)|" \
    -e "s|^RABBITMQ_PASSWORD=\$|RABBITMQ_PASSWORD=$(hex)|" \
    -e "s|^ADMIN_API_KEY=\$|ADMIN_API_KEY=$(hex)|" \
    -e "s|^GRAFANA_ADMIN_PASSWORD=\$|GRAFANA_ADMIN_PASSWORD=$(hex)|" \
    -e "s|^TOKEN_ENCRYPTION_KEYS=\$|TOKEN_ENCRYPTION_KEYS=$key|" \
    .env.example > "$out"
if [ -n "$demo" ]; then  # the fake Google's client (compose.demo.yaml points the services at the fake)
  sed -i -e "s|^GOOGLE_CLIENT_ID=\$|GOOGLE_CLIENT_ID=fake-client-id.apps.googleusercontent.com|" \
         -e "s|^GOOGLE_CLIENT_SECRET=\$|GOOGLE_CLIENT_SECRET=fake-client-secret|" "$out"
fi
echo "Wrote $out (mode 600) with fresh secrets. Keep it safe: TOKEN_ENCRYPTION_KEYS decrypts every stored token."
if [ -n "$demo" ]; then
  echo "Next: make up-demo (the stack with the fake Google)."
else
  echo "Next: set GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET in it, then make up."
fi
