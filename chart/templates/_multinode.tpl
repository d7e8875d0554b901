{{/*
Multi-node replicas (LeaderWorkerSet groups): when they apply, their sizes and names.
*/}}

{{/*
GPUs one node gives one pod: multinode.gpusPerNode, or for `auto` (the default) the layout the values
come from. The multi-node tutorial's chart required `gpu` as one string and `model.persistentVolumeClaim`,
and ran tensor × pipeline pods of one GPU each: values with both get 1, so its files render pods that
schedule wherever its pods did. Everything else gets 8.
*/}}
{{- define "llmprep.gpusPerNode" -}}
{{- $v := .Values.multinode.gpusPerNode }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "auto") }}
{{- if and (kindIs "string" .Values.gpu) .Values.model.persistentVolumeClaim }}1{{ else }}8{{ end }}
{{- else }}
{{- int $v }}
{{- end }}
{{- end }}

{{/* Non-empty when replicas are LeaderWorkerSet groups: multinode.enabled, or more GPUs than one node gives a pod. */}}
{{- define "llmprep.multinode" -}}
{{- $m := .Values.multinode }}
{{- if or $m.enabled (gt (int (include "llmprep.gpus" .)) (int (include "llmprep.gpusPerNode" .))) }}true{{ end }}
{{- end }}

{{/* GPUs of one pod: all of them on one pod, else one node's worth (llmprep.gpusPerNode). */}}
{{- define "llmprep.gpusPerPod" -}}
{{- $gpus := int (include "llmprep.gpus" .) }}
{{- if include "llmprep.multinode" . }}
{{- min $gpus (int (include "llmprep.gpusPerNode" .)) }}
{{- else }}
{{- $gpus }}
{{- end }}
{{- end }}

{{/* Pods of one group (LeaderWorkerSet size): GPUs / GPUs per pod. */}}
{{- define "llmprep.groupSize" -}}
{{- div (int (include "llmprep.gpus" .)) (int (include "llmprep.gpusPerPod" .)) }}
{{- end }}

{{/*
Name of the LeaderWorkerSet. Not the release name: the LWS controller creates a headless Service
named after the LWS (the pods' DNS subdomain) and would reuse our ClusterIP Service of that name,
leaving the group's pod names unresolvable. Short enough that <lws>-<group>-<index> and the worker
StatefulSets' revision labels stay within 63 characters.
*/}}
{{- define "llmprep.lwsName" -}}
{{- printf "%s-lws" (include "llmprep.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{/* Selector labels of the pods that serve (and export Triton's metrics): LWS leaders in multi-node. */}}
{{- define "llmprep.servingSelectorLabels" -}}
{{ include "llmprep.selectorLabels" . }}
{{- if include "llmprep.multinode" . }}
leaderworkerset.sigs.k8s.io/worker-index: "0"
{{- end }}
{{- end }}

{{/* The scheduler of the pods: multinode.schedulerName, else volcano for the volcano gang, else the default. */}}
{{- define "llmprep.schedulerName" -}}
{{- $m := .Values.multinode }}
{{- if $m.schedulerName }}{{ $m.schedulerName }}
{{- else if eq $m.gang.provider "volcano" }}volcano
{{- end }}
{{- end }}
