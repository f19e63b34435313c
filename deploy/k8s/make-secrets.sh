#!/usr/bin/env bash
# make-secrets.sh DIR [NAMESPACE]: the three Secrets the manifests name, with a new private CA, for
# a demo or a first install (production: bring your own CA, e.g. cert-manager, whose Certificate
# Secrets have the same keys tls.crt, tls.key, ca.crt). Writes into DIR (created, mode 700):
#   ca.crt ca.key                 a CA valid for a year
#   tls.crt tls.key               the scheduler's certificate, for both Services' names in NAMESPACE
#   admin.token user.token        client tokens (tenant "ops" role admin, tenant "demo" role user)
#   worker.token                  the workers' token
#   tokens worker-tokens          the scheduler's files of their SHA-256 hashes (docs/security.md)
#   secrets.yaml                  Secrets radial-tls, radial-tokens and radial-worker-token
# then: kubectl apply -f DIR/secrets.yaml. Needs openssl, sha256sum and kubectl (offline: it only
# formats the Secrets). tests/deploy/test_deploy.py runs it and starts the scheduler and a worker
# with its output.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 DIR [NAMESPACE]  (NAMESPACE defaults to radial)" >&2
  exit 2
fi
dir=$1
namespace=${2:-radial}
umask 077
mkdir -p "$dir"
cd "$dir"

# Every name a client or worker may dial the scheduler by: the two Services, short and qualified,
# and localhost for `kubectl port-forward`.
names=()
for service in radial-scheduler radial-scheduler-workers; do
  names+=("DNS:$service" "DNS:$service.$namespace" "DNS:$service.$namespace.svc"
          "DNS:$service.$namespace.svc.cluster.local")
done
names+=("DNS:localhost" "IP:127.0.0.1")
san=$(IFS=,; echo "${names[*]}")

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=radial demo CA" -keyout ca.key -out ca.crt \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=radial-scheduler" \
  -keyout tls.key -out tls.csr 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > tls.ext
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
  -extfile tls.ext -out tls.crt 2>/dev/null
rm -f tls.csr tls.ext ca.srl

token() { openssl rand -hex 32; }
hash() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
admin=$(token); user=$(token); worker=$(token)
printf %s "$admin" > admin.token
printf %s "$user" > user.token
printf %s "$worker" > worker.token
printf '%s ops admin\n%s demo user\n' "$(hash "$admin")" "$(hash "$user")" > tokens
printf '%s workers worker\n' "$(hash "$worker")" > worker-tokens

{
  kubectl create secret generic radial-tls -n "$namespace" --dry-run=client -o yaml \
    --from-file=tls.crt --from-file=tls.key --from-file=ca.crt
  echo "---"
  kubectl create secret generic radial-tokens -n "$namespace" --dry-run=client -o yaml \
    --from-file=tokens --from-file=worker-tokens
  echo "---"
  kubectl create secret generic radial-worker-token -n "$namespace" --dry-run=client -o yaml \
    --from-file=token=worker.token
} > secrets.yaml
echo "make-secrets: wrote $dir/secrets.yaml (kubectl apply -f $dir/secrets.yaml); tokens in $dir/*.token"
