{{/*
Names, labels and the image: what every template shares. The pod lives in _pod.tpl, monitoring and
autoscaling in _autoscaling.tpl, LeaderWorkerSet groups in _multinode.tpl, checks in _validate.tpl.
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
