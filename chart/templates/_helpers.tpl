{{/*
Names, labels and small computations every template shares.
*/}}

{{/* The chart name. */}}
{{- define "llmprep.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object: the release name, as in the tutorials (`kubectl get deployment <release>`),
unless kubernetes.fullnameOverride is set. Truncated to 63 characters (DNS label).
*/}}
{{- define "llmprep.fullname" -}}
{{- default .Release.Name .Values.kubernetes.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "llmprep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades (never add to them). `app: <release>` is the tutorials'
selector (`kubectl get … --selector app=<release>`).
*/}}
{{- define "llmprep.selectorLabels" -}}
app: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/name: {{ include "llmprep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" | quote }}
{{- end }}

{{/*
kubernetes.labels as one map: the map form as given, the tutorials' list form
(`kubernetes.labels[0].model=x`, a list of maps) merged in order.
*/}}
{{- define "llmprep.extraLabels" -}}
{{- $out := dict }}
{{- $given := .Values.kubernetes.labels }}
{{- if kindIs "map" $given }}
{{- $out = $given }}
{{- else if kindIs "slice" $given }}
{{- range $item := $given }}
{{- if kindIs "map" $item }}
{{- $out = merge $out $item }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key := keys $out | sortAlpha }}
{{ $key }}: {{ index $out $key | toString | quote }}
{{- end }}
{{- end }}

{{/* Labels of every object: recommended app.kubernetes.io set, the selector labels, kubernetes.labels. */}}
{{- define "llmprep.labels" -}}
helm.sh/chart: {{ include "llmprep.chart" . }}
{{ include "llmprep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmprep
{{- include "llmprep.extraLabels" . }}
{{- end }}

{{/* The Triton + llmprep image (required). */}}
{{- define "llmprep.image" -}}
{{- required "triton.image.name: set the image with Triton, TensorRT-LLM and llmprep, e.g. --set triton.image.name=registry/llmprep-triton:26.07" .Values.triton.image.name }}
{{- end }}

{{/* GPUs per pod: tensor × pipeline. */}}
{{- define "llmprep.gpus" -}}
{{- $p := .Values.model.tensorrtLlm.parallelism }}
{{- mul (int (default 1 $p.tensor)) (int (default 1 $p.pipeline)) }}
{{- end }}

{{/* The GPU products as a JSON list (gpu may be one string, as in the multi-node tutorial). */}}
{{- define "llmprep.gpuList" -}}
{{- $gpu := .Values.gpu }}
{{- if kindIs "string" $gpu }}{{ $gpu = list $gpu }}{{ end }}
{{- $gpu | toJson }}
{{- end }}

{{/* CPU of the Triton container: triton.resources.cpu, else max(4, GPUs). */}}
{{- define "llmprep.cpu" -}}
{{- $v := .Values.triton.resources.cpu }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}
{{- max 4 (int (include "llmprep.gpus" .)) }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* Memory of the Triton container: triton.resources.memory, else 8Gi × max(4, GPUs). */}}
{{- define "llmprep.memory" -}}
{{- $v := .Values.triton.resources.memory }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}
{{- printf "%dGi" (mul 8 (max 4 (int (include "llmprep.gpus" .)))) }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/*
Should a monitoring.coreos.com object render? Argument: (list $ "podMonitor"|"prometheusRule").
`auto`: when the cluster serves monitoring.coreos.com/v1 (Helm's capabilities or monitoring.apiVersions).
*/}}
{{- define "llmprep.monitoringOn" -}}
{{- $root := index . 0 }}
{{- $setting := toString (index $root.Values.monitoring (index . 1)).enabled }}
{{- if eq $setting "true" }}true
{{- else if eq $setting "auto" }}
{{- if or ($root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") (has "monitoring.coreos.com/v1" $root.Values.monitoring.apiVersions) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
PromQL matcher of this release's pods: Deployment pods are named <fullname>-<template hash>-<suffix>.
*/}}
{{- define "llmprep.podMatcher" -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "llmprep.fullname" . }}-[a-z0-9]+-[a-z0-9]+"
{{- end }}

{{/*
The autoscaling metrics as a JSON list of {name, value}: autoscaling.metric (the tutorials' one)
first, then autoscaling.metrics, each name once.
*/}}
{{- define "llmprep.metrics" -}}
{{- $out := list }}
{{- $seen := list }}
{{- $one := .Values.autoscaling.metric | default dict }}
{{- if $one.name }}
{{- $out = append $out (dict "name" $one.name "value" (toString $one.value)) }}
{{- $seen = append $seen $one.name }}
{{- end }}
{{- range $m := .Values.autoscaling.metrics }}
{{- if not (has $m.name $seen) }}
{{- $out = append $out (dict "name" $m.name "value" (toString $m.value)) }}
{{- $seen = append $seen $m.name }}
{{- end }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/* A Kubernetes quantity (`1500m`, `2`, `0.5`) as a plain number for PromQL and KEDA. */}}
{{- define "llmprep.number" -}}
{{- $v := toString . }}
{{- if hasSuffix "m" $v }}
{{- divf (trimSuffix "m" $v | float64) 1000 }}
{{- else }}
{{- float64 $v }}
{{- end }}
{{- end }}

{{/* Name of the HorizontalPodAutoscaler (KEDA names the one it creates keda-hpa-<ScaledObject>). */}}
{{- define "llmprep.hpaName" -}}
{{- if eq .Values.autoscaling.engine "keda" }}
{{- printf "keda-hpa-%s" (include "llmprep.fullname" .) }}
{{- else }}
{{- include "llmprep.fullname" . }}
{{- end }}
{{- end }}

{{/*
The model spec (llmprep/spec.py) as model.yaml: `gpu` and the whole `model` section, with unset
optional strings left out so the spec's defaults apply.
*/}}
{{- define "llmprep.modelSpec" -}}
{{- $model := deepCopy .Values.model }}
{{- range $key := list "hfRepo" "tokenizer" "pullSecret" "persistentVolumeClaim" }}
{{- if not (index $model $key) }}
{{- $_ := unset $model $key }}
{{- end }}
{{- end }}
{{- $gpu := include "llmprep.gpuList" . | fromJsonArray }}
{{- toYaml (dict "gpu" $gpu "model" $model) }}
{{- end }}

{{/* Environment of both containers: a writable home under /tmp (read-only root), the Hugging Face cache in the artifact cache. */}}
{{- define "llmprep.env" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: HF_HOME
  value: {{ printf "%s/hf" .Values.cache.mountPath | quote }}
{{- with .Values.triton.env }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volume mounts of both containers. */}}
{{- define "llmprep.volumeMounts" -}}
- name: model-spec
  mountPath: /etc/llmprep
  readOnly: true
- name: cache
  mountPath: {{ .Values.cache.mountPath }}
- name: shm
  mountPath: /dev/shm
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* A map of resource name → quantity, every quantity a string. */}}
{{- define "llmprep.quantities" -}}
{{- range $key := keys . | sortAlpha }}
{{ $key }}: {{ index $ $key | toString | quote }}
{{- end }}
{{- end }}

{{/* Checks the schema cannot express; each failure names the key and the fix. */}}
{{- define "llmprep.validate" -}}
{{- $r := .Values.autoscaling.replicas }}
{{- if lt (int $r.maximum) (int $r.minimum) }}
{{- fail (printf "autoscaling.replicas.maximum: must be at least autoscaling.replicas.minimum (%d < %d)" (int $r.maximum) (int $r.minimum)) }}
{{- end }}
{{- $t := .Values.model.tensorrtLlm }}
{{- if ge (int $t.maxInputLen) (int $t.maxSeqLen) }}
{{- fail (printf "model.tensorrtLlm.maxInputLen: must be less than maxSeqLen (%d >= %d)" (int $t.maxInputLen) (int $t.maxSeqLen)) }}
{{- end }}
{{- $extra := include "llmprep.extraLabels" . | fromYaml }}
{{- range $key := list "app" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" "app.kubernetes.io/managed-by" "app.kubernetes.io/version" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{- if hasKey $extra $key }}
{{- fail (printf "kubernetes.labels.%s: the chart sets this label itself (selectors depend on it); choose another key, e.g. pool" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.model.persistentVolumeClaim .Values.cache.persistentVolumeClaim.create }}
{{- fail "cache.persistentVolumeClaim.create: set it false when model.persistentVolumeClaim names an existing claim (one cache per release)" }}
{{- end }}
{{- end }}
