{{/*
Checks the schema cannot express; each failure names the key and the fix in one line.
*/}}

{{/* Checks the schema cannot express; each failure names the key and the fix. */}}
{{- define "llmprep.validate" -}}
{{- $r := .Values.autoscaling.replicas }}
{{- /* A null placeholder (the tutorials' values.yaml) removes the key: that is no request for 0. */}}
{{- if and (not (kindIs "invalid" $r.minimum)) (eq (int $r.minimum) 0) (not (and .Values.autoscaling.enable (eq .Values.autoscaling.engine "keda"))) }}
{{- fail "autoscaling.replicas.minimum: 0 (scale to zero) needs KEDA; set autoscaling.engine=keda (with autoscaling.enable=true) and a trigger that wakes it in autoscaling.keda.extraTriggers (chart/README.md, Scale to zero), or a minimum of at least 1" }}
{{- end }}
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
{{- include "llmprep.validateMultinode" . }}
{{- end }}

{{/* Checks of the multi-node layout; each failure names the key and the fix. */}}
{{- define "llmprep.validateMultinode" -}}
{{- if include "llmprep.multinode" . }}
{{- $m := .Values.multinode }}
{{- $gpus := int (include "llmprep.gpus" .) }}
{{- $perNode := int (include "llmprep.gpusPerNode" .) }}
{{- if and (gt $gpus $perNode) (ne 0 (mod $gpus $perNode)) }}
{{- fail (printf "multinode.gpusPerNode: tensor × pipeline = %d GPUs does not split evenly into pods of %d GPUs; set model.tensorrtLlm.parallelism.tensor/pipeline or multinode.gpusPerNode so that one divides the other" $gpus $perNode) }}
{{- end }}
{{- $size := int (include "llmprep.groupSize" .) }}
{{- if not (or .Values.model.persistentVolumeClaim .Values.cache.persistentVolumeClaim.create) }}
{{- fail "model.persistentVolumeClaim: multi-node groups need one shared ReadWriteMany cache (the leader prepares, every pod serves from it); name an existing claim, or set cache.persistentVolumeClaim.create=true" }}
{{- end }}
{{- if and (not .Values.model.persistentVolumeClaim) (not (has "ReadWriteMany" .Values.cache.persistentVolumeClaim.accessModes)) }}
{{- fail "cache.persistentVolumeClaim.accessModes: multi-node pods on several nodes share the cache; include ReadWriteMany" }}
{{- end }}
{{- if and (gt $size 1) (not $m.ssh.existingSecret) }}
{{- fail (printf "multinode.ssh.existingSecret: a group of %d pods needs the Secret with the group's ssh keys (id_ed25519, authorized_keys, ssh_host_ed25519_key, known_hosts); create it with the commands in chart/README.md (Multi-node) and set its name" $size) }}
{{- end }}
{{- if and (gt $size 1) (eq $m.topologyKey "kubernetes.io/hostname") }}
{{- fail (printf "multinode.topologyKey: kubernetes.io/hostname would put all %d pods of a group on one node; use a rack, switch or node-pool label, or leave it empty" $size) }}
{{- end }}
{{- $probes := .Values.triton.probes }}
{{- $budget := mul (int $probes.startupPeriodSeconds) (int $probes.startupFailureThreshold) }}
{{- if and (gt $size 1) (le $budget (int $m.waitWorkersSeconds)) }}
{{- fail (printf "triton.probes.startupFailureThreshold: the leader's startup budget (%d s) must exceed multinode.waitWorkersSeconds (%d s) plus the model's load time; raise it or lower the wait" $budget (int $m.waitWorkersSeconds)) }}
{{- end }}
{{- if and (eq $m.gang.provider "kueue") (not $m.gang.queue) }}
{{- fail "multinode.gang.queue: Kueue admits a LeaderWorkerSet only through a LocalQueue; set the LocalQueue's name" }}
{{- end }}
{{- end }}
{{- end }}
