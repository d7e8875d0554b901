#!/usr/bin/env bash
# Set up a cluster's GPU and metrics services for llmprep, in order, idempotently:
#   1. Node Feature Discovery           (kube-system)  node hardware labels
#   2. NVIDIA device plugin + GPU Feature Discovery (kube-system)  nvidia.com/gpu, gpu.product labels
#   3. kube-prometheus-stack            (monitoring)   Prometheus, Grafana, kube-state-metrics, operator
#   4. dcgm-exporter                    (monitoring)   per-pod GPU metrics (needs the operator's CRDs)
#   5. prometheus-adapter               (monitoring)   custom metrics API for the HPA (needs Prometheus)
# Every step is `helm upgrade --install` with a pinned chart version and the values file beside
# this script, so running it again converges instead of failing. A kube-prometheus-stack or a
# custom metrics adapter that this script did not install is left unchanged: the script prints
# what to add to it (monitoring/README.md).
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
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
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

# ----------------------------------------------------------------------------- what is there already
# Read-only look-ups (also under --dry-run): Helm releases, the Prometheus Operator's Prometheus
# objects, and the custom metrics APIService. A kube-prometheus-stack or an adapter this script
# did not install (any release name, any namespace, or none: applied without Helm) is left as it
# is; the script prints what to add to it instead. Ours carry the value llmprepManaged=true.
have() { command -v "$1" >/dev/null 2>&1; }
kube() { kubectl --request-timeout=10s "$@" 2>/dev/null; }

releases=""
if have helm; then
  releases="$(helm list --all-namespaces --output json 2>/dev/null || true)"
  releases="${releases//\},\{/$'\n'}"
fi

# Whether release $1 in namespace $2 was installed by this script.
installed_here() {
  [ -n "$1" ] && have helm && helm get values "$1" --namespace "$2" --output yaml 2>/dev/null | grep -q '^llmprepManaged: true'
}

# "name namespace" of the first release of chart $1 (e.g. prometheus-adapter) not installed here.
foreign_release() {
  local chart="$1" entry name ns
  while IFS= read -r entry; do
    [[ "$entry" =~ \"chart\":\"${chart}-[0-9] ]] || continue
    [[ "$entry" =~ \"name\":\"([^\"]*)\" ]] || continue
    name="${BASH_REMATCH[1]}"
    [[ "$entry" =~ \"namespace\":\"([^\"]*)\" ]] || continue
    ns="${BASH_REMATCH[1]}"
    if ! installed_here "$name" "$ns"; then
      echo "$name $ns"
      return
    fi
  done <<<"$releases"
}

# The chart flags (prefix $1, e.g. monitoring.podMonitor.labels) that give an object the labels a
# selector ($2, as kubectl prints it: {"matchLabels":{"release":"kps"}}) matches.
label_flags() {
  local prefix="$1" selector="$2" pairs flags="" key
  pairs="${selector#*\"matchLabels\":\{}"
  pairs="${pairs%%\}*}"
  while [[ "$pairs" =~ \"([^\"]+)\":\"([^\"]*)\"(.*) ]]; do
    key="${BASH_REMATCH[1]//./\\.}"
    flags+=" --set $prefix.$key=${BASH_REMATCH[2]}"
    pairs="${BASH_REMATCH[3]}"
  done
  echo "${flags# }"
}

# What an llmprep release's object needs so that selector $2 (named $1) of the existing Prometheus
# picks it up; $3: the chart's labels value for that object.
explain_selector() {
  local what="$1" selector="$2" prefix="$3"
  case "$selector" in
    "{}") echo "  its $what selects every one: nothing to add" ;;
    "") echo "  its $what is unset and selects none: set spec.$what: {} on Prometheus $stack_prometheus" ;;
    *matchExpressions*) echo "  its $what is $selector: give the chart's $prefix labels it matches" ;;
    *) echo "  its $what is $selector: install each llmprep release with $(label_flags "$prefix" "$selector")" ;;
  esac
}

stack_release=""       # "name namespace" of a kube-prometheus-stack release not installed here
stack_prometheus=""    # namespace/name of its (or a Helm-less) Prometheus object
stack_ns=""            # namespace of that Prometheus: its prometheus-operated Service lives there
pm_selector="" rule_selector="" sm_selector="" pm_ns_selector="" rule_ns_selector=""
stack_release="$(foreign_release kube-prometheus-stack)"
[ -z "$stack_release" ] || stack_ns="${stack_release#* }"
if have kubectl; then
  fields='{.metadata.namespace}|{.metadata.name}|{.metadata.annotations.meta\.helm\.sh/release-name}|{.metadata.annotations.meta\.helm\.sh/release-namespace}|{.spec.podMonitorSelector}|{.spec.ruleSelector}|{.spec.serviceMonitorSelector}|{.spec.podMonitorNamespaceSelector}|{.spec.ruleNamespaceSelector}'
  objects="$(kube get prometheuses.monitoring.coreos.com --all-namespaces --output "jsonpath={range .items[*]}$fields{\"\\n\"}{end}" || true)"
  while IFS='|' read -r ns name rel relns pm rule sm pmns rulens; do
    [ -n "$name" ] || continue
    if [ -n "$rel" ] && installed_here "$rel" "$relns"; then
      continue
    fi
    # the first one, or the one of the release found above
    if [ -z "$stack_prometheus" ] || [ "$rel $relns" = "$stack_release" ]; then
      stack_prometheus="$ns/$name"
      stack_ns="$ns"
      pm_selector="$pm" rule_selector="$rule" sm_selector="$sm" pm_ns_selector="$pmns" rule_ns_selector="$rulens"
    fi
    [ "$rel $relns" != "$stack_release" ] || break
  done <<<"$objects"
fi

prometheus_url="http://prometheus-kube-prometheus-prometheus.$namespace.svc"
dcgm_labels=()
if [ -n "$stack_release" ] || [ -n "$stack_prometheus" ]; then
  if [ -n "$stack_release" ]; then
    read -r name ns <<<"$stack_release"
    echo "note: kube-prometheus-stack release $name (namespace $ns) was not installed by this script: left unchanged (step 3 skipped)."
  else
    echo "note: Prometheus $stack_prometheus (Prometheus Operator, not installed with Helm) already runs: kube-prometheus-stack not installed (step 3 skipped)."
  fi
  prometheus_url="http://prometheus-operated.$stack_ns.svc"
  echo "For it to scrape llmprep's pods and evaluate its autoscaling rules:"
  if [ -n "$stack_prometheus" ]; then
    explain_selector podMonitorSelector "$pm_selector" monitoring.podMonitor.labels
    explain_selector ruleSelector "$rule_selector" monitoring.prometheusRule.labels
    [ -n "$pm_ns_selector" ] || echo "  its podMonitorNamespaceSelector is unset: it only watches namespace $stack_ns; install llmprep releases there or set spec.podMonitorNamespaceSelector: {}"
    [ -n "$rule_ns_selector" ] || echo "  its ruleNamespaceSelector is unset: it only loads rules from namespace $stack_ns; install llmprep releases there or set spec.ruleNamespaceSelector: {}"
    case "$sm_selector" in
      "" | *matchExpressions*) echo "  its serviceMonitorSelector is ${sm_selector:-unset}: make it select dcgm-exporter's ServiceMonitor (serviceMonitor.additionalLabels)" ;;
      "{}") ;;
      *) read -r -a dcgm_labels <<<"$(label_flags serviceMonitor.additionalLabels "$sm_selector")" ;;
    esac
  else
    read -r name ns <<<"$stack_release"
    echo "  kube-prometheus-stack selects release: $name by default (check: kubectl get prometheus -n $ns -o yaml):"
    echo "  install each llmprep release with --set monitoring.podMonitor.labels.release=$name --set monitoring.prometheusRule.labels.release=$name"
    dcgm_labels=(--set "serviceMonitor.additionalLabels.release=$name")
  fi
  echo "  Grafana: import chart/dashboards/llmprep-triton.json, or let its dashboard sidecar search every namespace for grafana_dashboard=1."
else
  run helm upgrade --install prometheus prometheus-community/kube-prometheus-stack \
    --namespace "$namespace" --create-namespace --version "$KPS_VERSION" \
    --values "$here/kube-prometheus-stack.values.yaml" \
    --set llmprepManaged=true --wait
fi
run helm upgrade --install dcgm-exporter nvidia-dcgm/dcgm-exporter \
  --namespace "$namespace" --create-namespace --version "$DCGM_VERSION" \
  --values "$here/dcgm-exporter.values.yaml" ${dcgm_labels[@]+"${dcgm_labels[@]}"} --wait

# A prometheus-adapter this script did not install (any release name, any namespace), or whatever
# else serves v1beta1.custom.metrics.k8s.io (one per cluster), keeps its rules: upgrading it, or
# installing a second adapter beside it, would replace them.
other_adapter="$(foreign_release prometheus-adapter)"
apiservice=""
if [ -z "$other_adapter" ] && have kubectl; then
  apiservice="$(kube get apiservice v1beta1.custom.metrics.k8s.io --output 'jsonpath={.metadata.annotations.meta\.helm\.sh/release-name}|{.metadata.annotations.meta\.helm\.sh/release-namespace}|{.spec.service.namespace}|{.spec.service.name}' || true)"
  IFS='|' read -r rel relns svc_ns svc_name <<<"$apiservice"
  if [ -n "$rel" ] && installed_here "$rel" "$relns"; then
    apiservice=""
  fi
fi

print_rules() {
  sed -n '/^  custom:/,$p' "$here/prometheus-adapter.values.yaml" | tail -n +2
}

if [ -n "$other_adapter" ]; then
  read -r name ns <<<"$other_adapter"
  echo "note: prometheus-adapter release $name (namespace $ns) was not installed by this script: left unchanged, its rules kept."
  echo "Add llmprep's rules to it: append these entries to its rules.custom (leave rules.default as you have it),"
  echo "then apply your merged values with: helm upgrade $name prometheus-community/prometheus-adapter -n $ns --reuse-values --values <merged file>"
  echo "Its prometheus.url must reach the Prometheus that loads llmprep's PrometheusRule ($prometheus_url). The entries to add:"
  print_rules
elif [ -n "$apiservice" ]; then
  if [ -n "$rel" ]; then
    owner="Helm release $rel (namespace $relns), not a prometheus-adapter this script installed"
  else
    owner="a service not installed with Helm"
  fi
  echo "note: APIService v1beta1.custom.metrics.k8s.io is served by $svc_ns/$svc_name, $owner: left unchanged (step 5 skipped)."
  echo "If it is a prometheus-adapter, append these entries to the rules: list of its configuration (the config.yaml"
  echo "of its ConfigMap) and restart it; its Prometheus URL must reach the Prometheus that loads llmprep's PrometheusRule"
  echo "($prometheus_url). If it is another metrics adapter, llmprep's HPA metrics need a prometheus-adapter in its place. The entries to add:"
  print_rules
else
  run helm upgrade --install prometheus-adapter prometheus-community/prometheus-adapter \
    --namespace "$namespace" --create-namespace --version "$ADAPTER_VERSION" \
    --values "$here/prometheus-adapter.values.yaml" \
    --set "prometheus.url=$prometheus_url" \
    --set llmprepManaged=true --wait
fi

echo "done: check the custom metrics API with"
echo "  kubectl get --raw /apis/custom.metrics.k8s.io/v1beta1 | head"
