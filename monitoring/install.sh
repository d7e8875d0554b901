#!/usr/bin/env bash
# Set up a cluster's GPU and metrics services for llmprep, in order, idempotently:
#   1. Node Feature Discovery           (kube-system)  node hardware labels
#   2. NVIDIA device plugin + GPU Feature Discovery (kube-system)  nvidia.com/gpu, gpu.product labels
#   3. kube-prometheus-stack            (monitoring)   Prometheus, Grafana, kube-state-metrics, operator
#   4. dcgm-exporter                    (monitoring)   per-pod GPU metrics (needs the operator's CRDs)
#   5. prometheus-adapter               (monitoring)   custom metrics API for the HPA (needs Prometheus)
# Every step is `helm upgrade --install` with a pinned chart version and the values file beside
# this script, so running it again converges instead of failing.
#
# Usage: monitoring/install.sh [--dry-run] [--skip-gpu] [--namespace NS]
#   --dry-run     print the commands instead of running them
#   --skip-gpu    skip steps 1-2 (the cloud provider already runs the device plugin and GFD)
#   --namespace   namespace of steps 3-5 (default: monitoring)
# Chart versions can be overridden: NFD_VERSION, DEVICE_PLUGIN_VERSION, KPS_VERSION,
# DCGM_VERSION, ADAPTER_VERSION.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dry_run=0
skip_gpu=0
namespace="monitoring"

NFD_VERSION="${NFD_VERSION:-0.15.4}"
DEVICE_PLUGIN_VERSION="${DEVICE_PLUGIN_VERSION:-0.18.2}"
KPS_VERSION="${KPS_VERSION:-72.6.2}"
DCGM_VERSION="${DCGM_VERSION:-4.8.2}"
ADAPTER_VERSION="${ADAPTER_VERSION:-4.10.0}"

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --skip-gpu) skip_gpu=1 ;;
    --namespace)
      [ "$#" -ge 2 ] || { echo "error: --namespace needs a value" >&2; exit 2; }
      namespace="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Print the command (shell-quoted, copy-pasteable); run it unless --dry-run.
run() {
  local quoted=()
  local arg
  for arg in "$@"; do
    quoted+=("$(printf '%q' "$arg")")
  done
  echo "+ ${quoted[*]}"
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

if [ "$dry_run" -eq 0 ] && ! command -v helm >/dev/null 2>&1; then
  echo "error: helm not found on PATH; install Helm 3.8+ (https://helm.sh/docs/intro/install/) or use --dry-run" >&2
  exit 1
fi

run helm repo add kube-nfd https://kubernetes-sigs.github.io/node-feature-discovery/charts --force-update
run helm repo add nvdp https://nvidia.github.io/k8s-device-plugin --force-update
run helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
run helm repo add nvidia-dcgm https://nvidia.github.io/dcgm-exporter/helm-charts --force-update
run helm repo update kube-nfd nvdp prometheus-community nvidia-dcgm

if [ "$skip_gpu" -eq 0 ]; then
  run helm upgrade --install node-feature-discovery kube-nfd/node-feature-discovery \
    --namespace kube-system --version "$NFD_VERSION" \
    --values "$here/node-feature-discovery.values.yaml" --wait
  run helm upgrade --install nvidia-device-plugin nvdp/nvidia-device-plugin \
    --namespace kube-system --version "$DEVICE_PLUGIN_VERSION" \
    --values "$here/nvidia-device-plugin.values.yaml" --wait
fi

run helm upgrade --install prometheus prometheus-community/kube-prometheus-stack \
  --namespace "$namespace" --create-namespace --version "$KPS_VERSION" \
  --values "$here/kube-prometheus-stack.values.yaml" --wait
run helm upgrade --install dcgm-exporter nvidia-dcgm/dcgm-exporter \
  --namespace "$namespace" --version "$DCGM_VERSION" \
  --values "$here/dcgm-exporter.values.yaml" --wait
# A prometheus-adapter this script did not install (any release name, any namespace) keeps its
# rules: upgrading it, or installing a second adapter beside it (one APIService
# v1beta1.custom.metrics.k8s.io per cluster), would replace them. Ours carry llmprepManaged=true.
other_adapter=""
if command -v helm >/dev/null 2>&1; then
  releases="$(helm list --all-namespaces --output json 2>/dev/null || true)"
  releases="${releases//\},\{/$'\n'}"
  while IFS= read -r entry; do
    [[ "$entry" =~ \"chart\":\"prometheus-adapter-[0-9] ]] || continue
    [[ "$entry" =~ \"name\":\"([^\"]*)\" ]] || continue
    name="${BASH_REMATCH[1]}"
    [[ "$entry" =~ \"namespace\":\"([^\"]*)\" ]] || continue
    ns="${BASH_REMATCH[1]}"
    if ! helm get values "$name" --namespace "$ns" --output yaml 2>/dev/null | grep -q '^llmprepManaged: true'; then
      other_adapter="$name $ns"
      break
    fi
  done <<<"$releases"
fi

if [ -n "$other_adapter" ]; then
  read -r name ns <<<"$other_adapter"
  echo "note: prometheus-adapter release $name (namespace $ns) was not installed by this script: left unchanged, its rules kept."
  echo "Add llmprep's rules to it: append these entries to its rules.custom (leave rules.default as you have it),"
  echo "then apply your merged values with: helm upgrade $name prometheus-community/prometheus-adapter -n $ns --reuse-values --values <merged file>"
  echo "Its prometheus.url must reach the Prometheus that loads llmprep's PrometheusRule. The entries to add:"
  sed -n '/^  custom:/,$p' "$here/prometheus-adapter.values.yaml" | tail -n +2
else
  run helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \
    --namespace "$namespace" --version "$ADAPTER_VERSION" \
    --values "$here/prometheus-adapter.values.yaml" \
    --set "prometheus.url=http://prometheus-kube-prometheus-prometheus.$namespace.svc" \
    --set llmprepManaged=true --wait
fi

echo "done: check the custom metrics API with"
echo "  kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1 | head"
