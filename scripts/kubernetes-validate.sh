#!/usr/bin/env bash
# Checks the Kubernetes manifests without a cluster: kustomize builds them (kubectl), and
# every object passes a strict schema check against Kubernetes' own OpenAPI schemas
# (kubernetes-validate from PyPI, in a throwaway venv), the examples included. What it cannot
# do without an API server: `kubectl apply --dry-run=client` needs the server's discovery
# (run it against your cluster: kubectl apply -k deploy/kubernetes --dry-run=server).
#
#   scripts/kubernetes-validate.sh          # K8S_VERSION=1.33.0 by default
set -euo pipefail
cd "$(dirname "$0")/.."
version=${K8S_VERSION:-1.33.0}
command -v kubectl >/dev/null || { echo "kubectl not found" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q kubernetes-validate
validate() { "$work/venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$@"; }

echo "== kustomize build deploy/kubernetes"
kubectl kustomize deploy/kubernetes > "$work/stack.yaml"
grep -c '^kind:' "$work/stack.yaml" | xargs echo "objects:"
validate "$work/stack.yaml"

echo "== jobs (generateName stands in for a name: the schema wants one)"
for f in deploy/kubernetes/jobs/*.yaml; do
  sed 's/generateName: \(.*\)-$/name: \1/' "$f" > "$work/$(basename "$f")"
  validate "$work/$(basename "$f")"
done

echo "== examples: the queue-depth HPA, and the model as an image volume (patched in)"
validate deploy/kubernetes/examples/hpa-queue-depth.yaml
mkdir -p "$work/overlay"
cp -r deploy/kubernetes "$work/overlay/base"
cat > "$work/overlay/kustomization.yaml" <<'YAML'
resources: [base]
patches:
  - path: base/examples/model-image-volume.yaml
YAML
kubectl kustomize "$work/overlay" > "$work/image-volume.yaml"
grep -q 'reference: registry.example.com/sentiment-model-files' "$work/image-volume.yaml"
! grep -q 'claimName: model$' "$work/image-volume.yaml" || { echo "the model PVC is still mounted" >&2; exit 1; }
validate "$work/image-volume.yaml"
echo "all manifests valid against Kubernetes $version"
