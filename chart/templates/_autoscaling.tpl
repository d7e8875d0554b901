{{/*
Monitoring and autoscaling: which monitoring objects render, the PromQL pod matcher, the metrics
list, quantities as numbers, the autoscaler's names and target, the alerts' labels.
*/}}

{{/*
Should a monitoring.coreos.com object render? Argument: (list $ "podMonitor"|"prometheusRule"); another arity fails.
`auto`: when the cluster serves monitoring.coreos.com/v1 (Helm's capabilities or monitoring.apiVersions).
*/}}
{{- define "llmprep.monitoringOn" -}}
{{- if not (and (kindIs "slice" .) (eq (len .) 2)) }}
{{- fail "llmprep.monitoringOn: call it as (list $ \"podMonitor\"|\"prometheusRule\")" }}
{{- end }}
{{- $root := index . 0 }}
{{- $setting := toString (index $root.Values.monitoring (index . 1)).enabled }}
{{- if eq $setting "true" }}true
{{- else if eq $setting "auto" }}
{{- if or ($root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") (has "monitoring.coreos.com/v1" $root.Values.monitoring.apiVersions) }}true{{ end }}
{{- end }}
{{- end }}

{{/*
PromQL matcher of this release's serving pods: Deployment pods are named
<fullname>-<template hash>-<suffix>; in a LeaderWorkerSet only leaders (<lws>-<group>) serve and
export Triton's metrics, so workers (<lws>-<group>-<index>) are left out of every recorded signal.
*/}}
{{- define "llmprep.podMatcher" -}}
{{- if include "llmprep.multinode" . -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "llmprep.lwsName" . }}-[0-9]+"
{{- else -}}
namespace="{{ .Release.Namespace }}",pod=~"{{ include "llmprep.fullname" . }}-[a-z0-9]+-[a-z0-9]+"
{{- end }}
{{- end }}

{{/*
The default autoscaling inputs of a runtime, a JSON list of {name, value}: what autoscaling.metrics
`[]` (its default) stands for. From the signals proof (docs/signals.md, issue 19): on pytorch
(llmapi) the executor's queue, which our llmapi model exports, passed the batch-bound regime and
the waiting count the KV-bound one; on the engine runtime the C++ backend exports no executor
queue, so nothing passed batch-bound there: the waiting count (KV-bound) and Triton's pending
count (BLS) stay, and NOTES.txt says that plainly.
*/}}
{{- define "llmprep.defaultMetrics" -}}
{{- if eq (toString .Values.model.tensorrtLlm.runtime) "pytorch" -}}
[{"name":"trtllm:requests_queued","value":"2"},{"name":"trtllm:requests_waiting","value":"2"}]
{{- else -}}
[{"name":"trtllm:requests_waiting","value":"2"},{"name":"triton:pending_requests","value":"2"}]
{{- end }}
{{- end }}

{{/*
The autoscaling metrics as a JSON list of {name, value}: autoscaling.metric (the tutorials' one)
first, then autoscaling.metrics, each name once. autoscaling.metric is unset by default. The
tutorials' per-model values files set only its `value`, a target for their chart's default name,
so a value without a name key means the tutorials' ratio; an explicit name, even empty, wins. A
name without a value gets the tutorials' default target, 1000m. autoscaling.metrics `[]` (the
default) means the runtime's default inputs (llmprep.defaultMetrics); null (the key removed)
means none beside autoscaling.metric.
*/}}
{{- define "llmprep.metrics" -}}
{{- $out := list }}
{{- $seen := list }}
{{- $one := .Values.autoscaling.metric | default dict }}
{{- $ratio := "triton:queue_compute:ratio" }}
{{- $value := "" }}
{{- if not (kindIs "invalid" $one.value) }}{{ $value = toString $one.value }}{{ end }}
{{- $name := $one.name | default "" }}
{{- if and (not (hasKey $one "name")) $value }}{{ $name = $ratio }}{{ end }}
{{- if and $name (not $value) }}{{ $value = "1000m" }}{{ end }}
{{- if $name }}
{{- $out = append $out (dict "name" $name "value" $value) }}
{{- $seen = append $seen $name }}
{{- end }}
{{- $list := .Values.autoscaling.metrics }}
{{- if and (hasKey .Values.autoscaling "metrics") (kindIs "slice" $list) (eq (len $list) 0) }}
{{- $list = include "llmprep.defaultMetrics" . | fromJsonArray }}
{{- end }}
{{- range $m := $list }}
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

{{/* The autoscaler's target: the Deployment, or the LeaderWorkerSet (its scale subresource counts groups). */}}
{{- define "llmprep.scaleTargetRef" -}}
{{- if include "llmprep.multinode" . -}}
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
name: {{ include "llmprep.lwsName" . | quote }}
{{- else -}}
apiVersion: apps/v1
kind: Deployment
name: {{ include "llmprep.fullname" . | quote }}
{{- end }}
{{- end }}

{{/*
Labels of one alert: its severity (monitoring.alerts.<ALERT>.severity), the metric it is about
when there is one, then monitoring.alerts.labels (routing). Argument: (list $ ALERT METRIC), ALERT
a key of monitoring.alerts (`signalMissing`, `targetDown`, …), METRIC a signal name or "" for none.
*/}}
{{- define "llmprep.alertLabels" -}}
{{- if not (and (kindIs "slice" .) (eq (len .) 3)) }}
{{- fail "llmprep.alertLabels: call it as (list $ ALERT METRIC), METRIC \"\" for none" }}
{{- end }}
{{- $alerts := (index . 0).Values.monitoring.alerts }}
{{- $alert := index $alerts (index . 1) }}
{{- if not (kindIs "map" $alert) }}
{{- fail (printf "llmprep.alertLabels: monitoring.alerts.%s is not an alert" (toString (index . 1))) }}
{{- end -}}
severity: {{ $alert.severity | quote }}
{{- with index . 2 }}
metric: {{ . | quote }}
{{- end }}
{{- with $alerts.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}
