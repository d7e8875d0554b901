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

{{/* CPU of the Triton container: triton.resources.cpu, else max(4, GPUs of the pod). */}}
{{- define "llmprep.cpu" -}}
{{- $v := .Values.triton.resources.cpu }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}
{{- max 4 (int (include "llmprep.gpusPerPod" .)) }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* Memory of the Triton container: triton.resources.memory, else 8Gi × max(4, GPUs of the pod). */}}
{{- define "llmprep.memory" -}}
{{- $v := .Values.triton.resources.memory }}
{{- if or (kindIs "invalid" $v) (eq (toString $v) "") }}
{{- printf "%dGi" (mul 8 (max 4 (int (include "llmprep.gpusPerPod" .)))) }}
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
The autoscaling metrics as a JSON list of {name, value}: autoscaling.metric (the tutorials' one)
first, then autoscaling.metrics, each name once. autoscaling.metric is unset by default. The
tutorials' per-model values files set only its `value`, a target for their chart's default name,
so a value without a name key means the tutorials' ratio; an explicit name, even empty, wins. A
name without a value gets the tutorials' default target, 1000m.
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

{{/*
Volume mounts of both containers. Argument: the root context, or (dict "root" $ "specVolume" NAME)
to mount another volume at /etc/llmprep (a group's serving container: the spec plus the ssh keys).
*/}}
{{- define "llmprep.volumeMounts" -}}
{{- $root := . }}
{{- $specVolume := "model-spec" }}
{{- if hasKey . "root" }}
{{- $root = .root }}
{{- $specVolume = .specVolume }}
{{- end -}}
- name: {{ $specVolume }}
  mountPath: /etc/llmprep
  readOnly: true
- name: cache
  mountPath: {{ $root.Values.cache.mountPath }}
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
{{- include "llmprep.validateMultinode" . }}
{{- end }}

{{/* ---------------------------------------------------------------- multi-node (LeaderWorkerSet) */}}

{{/* Non-empty when replicas are LeaderWorkerSet groups: multinode.enabled, or more GPUs than one node has. */}}
{{- define "llmprep.multinode" -}}
{{- $m := .Values.multinode }}
{{- if or $m.enabled (gt (int (include "llmprep.gpus" .)) (int $m.gpusPerNode)) }}true{{ end }}
{{- end }}

{{/* GPUs of one pod: all of them on one pod, else one node's worth (multinode.gpusPerNode). */}}
{{- define "llmprep.gpusPerPod" -}}
{{- $gpus := int (include "llmprep.gpus" .) }}
{{- if include "llmprep.multinode" . }}
{{- min $gpus (int .Values.multinode.gpusPerNode) }}
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

{{/* Checks of the multi-node layout; each failure names the key and the fix. */}}
{{- define "llmprep.validateMultinode" -}}
{{- if include "llmprep.multinode" . }}
{{- $m := .Values.multinode }}
{{- $gpus := int (include "llmprep.gpus" .) }}
{{- $perNode := int $m.gpusPerNode }}
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

{{/*
The pod template of the Deployment (role "single") and of the LeaderWorkerSet's leader and worker.
Argument: (dict "root" $ "role" "single"|"leader"|"worker"). Every role runs the same init container
(`llmprep prepare`: the cache lock lets one pod build a key while the others wait and reuse it) and
the same main command: `llmprep serve` picks the leader or worker side from LWS_WORKER_INDEX.
*/}}
{{- define "llmprep.podTemplate" -}}
{{- $root := .root }}
{{- $role := .role }}
{{- $V := $root.Values }}
{{- $fullname := include "llmprep.fullname" $root }}
{{- $gpus := include "llmprep.gpusPerPod" $root }}
{{- $cacheMount := $V.cache.mountPath }}
{{- $tri := $V.triton }}
{{- $spec := "/etc/llmprep/model.yaml" }}
{{- $group := ne $role "single" }}
{{- $ssh := and $group (gt (int (include "llmprep.groupSize" $root)) 1) }}
metadata:
  labels:
    {{- include "llmprep.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ ternary "worker" "server" (eq $role "worker") }}
  annotations:
    # A changed model spec rolls the pods.
    checksum/model-spec: {{ include "llmprep.modelSpec" $root | sha256sum }}
    {{- with $V.kubernetes.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with $V.kubernetes.serviceAccount }}
  serviceAccountName: {{ . }}
  {{- end }}
  # Triton and llmprep never call the Kubernetes API.
  automountServiceAccountToken: false
  {{- with $tri.image.pullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $V.kubernetes.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if $group }}
  {{- with include "llmprep.schedulerName" $root }}
  schedulerName: {{ . }}
  {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml $tri.podSecurityContext | nindent 4 }}
  # preStop: Endpoints drop the pod, then clients leave it (llmprep drain); then Triton drains for
  # up to exitTimeoutSeconds.
  terminationGracePeriodSeconds: {{ add $tri.preStopSeconds $tri.drainTimeoutSeconds $tri.exitTimeoutSeconds 15 }}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - key: nvidia.com/gpu.product
                operator: In
                values:
                  {{- range include "llmprep.gpuList" $root | fromJsonArray }}
                  - {{ . | quote }}
                  {{- end }}
  {{- with $V.kubernetes.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  tolerations:
    - key: nvidia.com/gpu
      operator: Exists
      effect: NoSchedule
    {{- with $V.kubernetes.tolerations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  initContainers:
    {{- if include "llmprep.cacheNeedsOwner" $root }}
    # The kubelet creates a hostPath directory as root, mode 0755, and fsGroup does not apply to
    # hostPath: hand the cache directory (only it, not its contents) to the pod's uid and gid.
    # Root with CAP_CHOWN and CAP_FOWNER only, nothing else (values.yaml: cache.hostPathOwner).
    - name: cache-owner
      image: {{ include "llmprep.image" $root | quote }}
      imagePullPolicy: {{ $tri.image.imagePullPolicy | default $tri.image.pullPolicy }}
      command:
        - sh
        - -c
        - chown {{ $tri.podSecurityContext.runAsUser | int64 }}:{{ $tri.podSecurityContext.runAsGroup | default $tri.podSecurityContext.runAsUser | int64 }} {{ $cacheMount | quote }} && chmod 0770 {{ $cacheMount | quote }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 64Mi
      securityContext:
        runAsUser: 0
        runAsNonRoot: false
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop:
            - ALL
          add:
            - CHOWN
            - FOWNER
      volumeMounts:
        - name: cache
          mountPath: {{ $cacheMount }}
    {{- end }}
    # Download, build (engine runtime) and write the model repository into the shared cache;
    # a warm cache makes this a sub-second check.
    - name: prepare
      image: {{ include "llmprep.image" $root | quote }}
      imagePullPolicy: {{ $tri.image.imagePullPolicy | default $tri.image.pullPolicy }}
      command:
        - llmprep
        - prepare
        - --spec
        - {{ $spec }}
        - --cache
        - {{ $cacheMount | quote }}
        {{- if $V.model.pullSecret }}
        - --token-file
        - /var/run/secrets/hf/password
        {{- end }}
      env:
        {{- include "llmprep.env" $root | nindent 8 }}
      {{- $prepare := dict "cpu" $V.model.tensorrtLlm.conversion.cpu "memory" $V.model.tensorrtLlm.conversion.memory "ephemeral-storage" $tri.resources.ephemeralStorage "nvidia.com/gpu" $gpus }}
      resources:
        requests:
          {{- include "llmprep.quantities" $prepare | trim | nindent 10 }}
        limits:
          {{- include "llmprep.quantities" $prepare | trim | nindent 10 }}
      securityContext:
        {{- toYaml $tri.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "llmprep.volumeMounts" $root | nindent 8 }}
        {{- if $V.model.pullSecret }}
        - name: hf-token
          mountPath: /var/run/secrets/hf
          readOnly: true
        {{- end }}
  containers:
    - name: triton
      image: {{ include "llmprep.image" $root | quote }}
      imagePullPolicy: {{ $tri.image.imagePullPolicy | default $tri.image.pullPolicy }}
      command:
        - llmprep
        - serve
        - --spec
        - {{ $spec }}
        - --cache
        - {{ $cacheMount | quote }}
        - --http-port
        - "8000"
        - --grpc-port
        - "8001"
        - --metrics-port
        - "8002"
        - --exit-timeout-secs
        - {{ $tri.exitTimeoutSeconds | quote }}
        {{- if $ssh }}
        - --ssh-port
        - {{ $V.multinode.sshPort | quote }}
        - --wait-workers-secs
        - {{ $V.multinode.waitWorkersSeconds | quote }}
        {{- end }}
      env:
        {{- include "llmprep.env" $root | nindent 8 }}
      ports:
        {{- if eq $role "worker" }}
        - name: ssh
          containerPort: {{ $V.multinode.sshPort }}
          protocol: TCP
        {{- else }}
        - name: http
          containerPort: 8000
          protocol: TCP
        - name: grpc
          containerPort: 8001
          protocol: TCP
        - name: metrics
          containerPort: 8002
          protocol: TCP
        {{- end }}
      {{- if eq $role "worker" }}
      # The worker serves nothing itself: it is ready when its sshd accepts the leader's mpirun.
      startupProbe:
        tcpSocket:
          port: ssh
        periodSeconds: {{ $tri.probes.startupPeriodSeconds }}
        failureThreshold: {{ $tri.probes.startupFailureThreshold }}
      readinessProbe:
        tcpSocket:
          port: ssh
        periodSeconds: {{ $tri.probes.readinessPeriodSeconds }}
        failureThreshold: 2
      livenessProbe:
        tcpSocket:
          port: ssh
        periodSeconds: {{ $tri.probes.livenessPeriodSeconds }}
        failureThreshold: {{ $tri.probes.livenessFailureThreshold }}
      lifecycle:
        preStop:
          # Keep this pod's ranks alive while the leader drains its in-flight requests; the
          # leader's mpirun stops them afterwards.
          exec:
            command: ["sleep", {{ add $tri.preStopSeconds $tri.drainTimeoutSeconds $tri.exitTimeoutSeconds | quote }}]
      {{- else }}
      startupProbe:
        httpGet:
          path: /v2/health/ready
          port: http
        periodSeconds: {{ $tri.probes.startupPeriodSeconds }}
        failureThreshold: {{ $tri.probes.startupFailureThreshold }}
      readinessProbe:
        httpGet:
          path: /v2/health/ready
          port: http
        periodSeconds: {{ $tri.probes.readinessPeriodSeconds }}
        failureThreshold: 2
      livenessProbe:
        httpGet:
          path: /v2/health/live
          port: http
        periodSeconds: {{ $tri.probes.livenessPeriodSeconds }}
        failureThreshold: {{ $tri.probes.livenessFailureThreshold }}
      lifecycle:
        preStop:
          # Serve while Endpoints drop the pod, then wait until no client is connected: a stopping
          # Triton refuses an ensemble's next step, so a request still in flight would be lost.
          exec:
            command: ["llmprep", "drain", "--port", "8000", "--port", "8001", "--pause", {{ $tri.preStopSeconds | quote }}, "--timeout", {{ $tri.drainTimeoutSeconds | quote }}]
      {{- end }}
      {{- $triton := dict "cpu" (include "llmprep.cpu" $root) "memory" (include "llmprep.memory" $root) "ephemeral-storage" $tri.resources.ephemeralStorage "nvidia.com/gpu" $gpus }}
      resources:
        # Requests equal limits: Guaranteed QoS, the GPU pod is the last to be evicted.
        requests:
          {{- include "llmprep.quantities" $triton | trim | nindent 10 }}
        limits:
          {{- include "llmprep.quantities" $triton | trim | nindent 10 }}
      securityContext:
        {{- toYaml $tri.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "llmprep.volumeMounts" (dict "root" $root "specVolume" (ternary "model-spec-ssh" "model-spec" $ssh)) | nindent 8 }}
        {{- if $ssh }}
        {{- if eq $role "worker" }}
        # sshd's privilege-separation folder (the root filesystem is read-only).
        - name: sshd-run
          mountPath: /run/sshd
        {{- end }}
        {{- end }}
  volumes:
    - name: model-spec
      configMap:
        name: {{ $fullname }}-model
    - name: cache
      {{- if $V.model.persistentVolumeClaim }}
      persistentVolumeClaim:
        claimName: {{ $V.model.persistentVolumeClaim }}
      {{- else if $V.cache.persistentVolumeClaim.create }}
      persistentVolumeClaim:
        claimName: {{ $fullname }}-cache
      {{- else }}
      hostPath:
        path: {{ $V.kubernetes.hostRootPath | default "/triton" }}
        type: DirectoryOrCreate
      {{- end }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $tri.shmSize }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $tri.resources.ephemeralStorage }}
    {{- if $V.model.pullSecret }}
    - name: hf-token
      secret:
        secretName: {{ $V.model.pullSecret }}
        defaultMode: 0400
    {{- end }}
    {{- if $ssh }}
    # The spec and the group's ssh keys under one /etc/llmprep (keys in ssh/, mode 0400): a Secret
    # mounted inside the read-only ConfigMap mount would need a mount point the runtime cannot create.
    # Only the serving container mounts it; `prepare` never sees the keys.
    - name: model-spec-ssh
      projected:
        defaultMode: 0444
        sources:
          - configMap:
              name: {{ $fullname }}-model
          - secret:
              name: {{ $V.multinode.ssh.existingSecret }}
              items:
                {{- range list "id_ed25519" "authorized_keys" "ssh_host_ed25519_key" "known_hosts" }}
                - key: {{ . }}
                  path: ssh/{{ . }}
                  mode: 0400
                {{- end }}
    {{- if eq $role "worker" }}
    - name: sshd-run
      emptyDir:
        medium: Memory
        sizeLimit: 1Mi
    {{- end }}
    {{- end }}
{{- end }}

{{/* The autoscaler's target: the Deployment, or the LeaderWorkerSet (its scale subresource counts groups). */}}
{{- define "llmprep.scaleTargetRef" -}}
{{- if include "llmprep.multinode" . -}}
apiVersion: leaderworkerset.x-k8s.io/v1
kind: LeaderWorkerSet
name: {{ include "llmprep.lwsName" . }}
{{- else -}}
apiVersion: apps/v1
kind: Deployment
name: {{ include "llmprep.fullname" . }}
{{- end }}
{{- end }}

{{/*
"true" when the pods mount a hostPath cache and `cache.hostPathOwner` is on: the cache-owner init
container then makes the kubelet-created directory writable by the pod's uid.
*/}}
{{- define "llmprep.cacheNeedsOwner" -}}
{{- $V := .Values -}}
{{- if and $V.cache.hostPathOwner (not $V.model.persistentVolumeClaim) (not $V.cache.persistentVolumeClaim.create) -}}
true
{{- end -}}
{{- end -}}
