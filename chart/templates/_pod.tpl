{{/*
The pod: the template every role shares (Deployment, LeaderWorkerSet leader and worker), its
environment, mounts, resource quantities, probes and the model spec it mounts.
*/}}

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
The model spec (llmprep/spec/) as model.yaml: `gpu`, the whole `model` section with unset optional
strings left out so the spec's defaults apply, and `triton.serverOptions` (the serving tritonserver's
extra flags; the rest of `triton` is the chart's own).
*/}}
{{- define "llmprep.modelSpec" -}}
{{- $model := deepCopy .Values.model }}
{{- range $key := list "hfRepo" "tokenizer" "pullSecret" "persistentVolumeClaim" }}
{{- if not (index $model $key) }}
{{- $_ := unset $model $key }}
{{- end }}
{{- end }}
{{- $gpu := include "llmprep.gpuList" . | fromJsonArray }}
{{- toYaml (dict "gpu" $gpu "model" $model "triton" (dict "serverOptions" .Values.triton.serverOptions)) }}
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
Volume mounts of both containers. Argument: (list $ SPEC_VOLUME): the volume mounted at /etc/llmprep,
`model-spec` (the spec) or, for a group's serving container, `model-spec-ssh` (the spec plus the ssh keys).
*/}}
{{- define "llmprep.volumeMounts" -}}
{{- if not (and (kindIs "slice" .) (eq (len .) 2)) }}
{{- fail "llmprep.volumeMounts: call it as (list $ \"model-spec\"|\"model-spec-ssh\")" }}
{{- end }}
{{- $root := index . 0 }}
{{- $specVolume := index . 1 -}}
- name: {{ $specVolume }}
  mountPath: /etc/llmprep
  readOnly: true
- name: cache
  mountPath: {{ $root.Values.cache.mountPath | quote }}
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

{{/*
The three probes of the Triton container. Argument: (list $ "serving"|"worker"). A serving pod
answers Triton's health endpoints on port http; a worker serves nothing itself and is ready when
its sshd accepts the leader's mpirun (port ssh). Periods and thresholds come from triton.probes;
readiness fails after two misses so a draining pod leaves the Endpoints quickly.
*/}}
{{- define "llmprep.probes" -}}
{{- if not (and (kindIs "slice" .) (eq (len .) 2)) }}
{{- fail "llmprep.probes: call it as (list $ \"serving\"|\"worker\")" }}
{{- end }}
{{- $p := (index . 0).Values.triton.probes }}
{{- $kind := index . 1 }}
{{- if not (has $kind (list "serving" "worker")) }}
{{- fail (printf "llmprep.probes: the second element is \"serving\" or \"worker\", not %q" (toString $kind)) }}
{{- end }}
{{- $probes := list (list "startupProbe" "/v2/health/ready" $p.startupPeriodSeconds $p.startupFailureThreshold) (list "readinessProbe" "/v2/health/ready" $p.readinessPeriodSeconds 2) (list "livenessProbe" "/v2/health/live" $p.livenessPeriodSeconds $p.livenessFailureThreshold) }}
{{- range $probe := $probes }}
{{ index $probe 0 }}:
  {{- if eq $kind "worker" }}
  tcpSocket:
    port: ssh
  {{- else }}
  httpGet:
    path: {{ index $probe 1 }}
    port: http
  {{- end }}
  periodSeconds: {{ index $probe 2 }}
  failureThreshold: {{ index $probe 3 }}
{{- end }}
{{- end }}

{{/*
The pod template of the Deployment (role "single") and of the LeaderWorkerSet's leader and worker.
Argument: (dict "root" $ "role" "single"|"leader"|"worker"). The pods that build run the init
container `llmprep prepare` (the cache lock lets one pod build a key while the others wait and
reuse it), sized by model.tensorrtLlm.conversion: a Deployment's pods and a group's leader. A
group's workers run none: a group always has a shared claim (_validate.tpl), the leader builds
into it before its mpirun starts any rank on them, and a worker's prepare would only hold a
conversion-sized request (or win the lock and build in the wrong pod). Every role runs the same
main command: `llmprep serve` picks the leader or worker side from LWS_WORKER_INDEX.
*/}}
{{- define "llmprep.podTemplate" -}}
{{- if not (and (kindIs "map" .) (hasKey . "root") (has (.role | default "") (list "single" "leader" "worker"))) }}
{{- fail "llmprep.podTemplate: call it as (dict \"root\" $ \"role\" \"single\"|\"leader\"|\"worker\")" }}
{{- end }}
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
{{- $builds := ne $role "worker" }}
{{- $owner := include "llmprep.cacheNeedsOwner" $root }}
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
  serviceAccountName: {{ . | quote }}
  {{- end }}
  # Triton and llmprep never call the Kubernetes API.
  automountServiceAccountToken: false
  {{- with $tri.image.pullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $V.kubernetes.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  {{- if $group }}
  {{- with include "llmprep.schedulerName" $root }}
  schedulerName: {{ . | quote }}
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
  {{- if or $owner $builds }}
  initContainers:
    {{- if $owner }}
    # The kubelet creates a hostPath directory as root, mode 0755, and fsGroup does not apply to
    # hostPath: hand the cache directory to the pod's uid and gid, and whatever inside it another
    # owner left (the tutorials' pods ran as root on the same path); files already ours are not
    # touched, so a warm cache costs one walk of its metadata. Root with CAP_CHOWN and CAP_FOWNER
    # only, nothing else (values.yaml: cache.hostPathOwner).
    - name: cache-owner
      image: {{ include "llmprep.image" $root | quote }}
      imagePullPolicy: {{ $tri.image.imagePullPolicy | default $tri.image.pullPolicy }}
      command:
        - sh
        - -c
        {{- $uid := $tri.podSecurityContext.runAsUser | int64 }}
        {{- $gid := $tri.podSecurityContext.runAsGroup | default $tri.podSecurityContext.runAsUser | int64 }}
        - chown {{ $uid }}:{{ $gid }} "$1" && chmod 0770 "$1" && find "$1" -xdev -mindepth 1 \( ! -user {{ $uid }} -o ! -group {{ $gid }} \) -exec chown -h {{ $uid }}:{{ $gid }} {} +
      # The path as the script's argument ($1), never spliced into the shell text.
      args:
        - cache-owner
        - {{ $cacheMount | quote }}
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
          mountPath: {{ $cacheMount | quote }}
    {{- end }}
    {{- if $builds }}
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
        {{- include "llmprep.volumeMounts" (list $root "model-spec") | nindent 8 }}
        {{- if $V.model.pullSecret }}
        - name: hf-token
          mountPath: /var/run/secrets/hf
          readOnly: true
        {{- end }}
    {{- end }}
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
      {{- include "llmprep.probes" (list $root "worker") | nindent 6 }}
      lifecycle:
        preStop:
          # Keep this pod's ranks alive while the leader drains its in-flight requests; the
          # leader's mpirun stops them afterwards.
          exec:
            command: ["sleep", {{ add $tri.preStopSeconds $tri.drainTimeoutSeconds $tri.exitTimeoutSeconds | quote }}]
      {{- else }}
      {{- include "llmprep.probes" (list $root "serving") | nindent 6 }}
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
        {{- include "llmprep.volumeMounts" (list $root (ternary "model-spec-ssh" "model-spec" $ssh)) | nindent 8 }}
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
        name: {{ printf "%s-model" $fullname | quote }}
    - name: cache
      {{- if $V.model.persistentVolumeClaim }}
      persistentVolumeClaim:
        claimName: {{ $V.model.persistentVolumeClaim | quote }}
      {{- else if $V.cache.persistentVolumeClaim.create }}
      persistentVolumeClaim:
        claimName: {{ printf "%s-cache" $fullname | quote }}
      {{- else }}
      hostPath:
        path: {{ $V.kubernetes.hostRootPath | default "/triton" | quote }}
        type: DirectoryOrCreate
      {{- end }}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: {{ $tri.shmSize | toString | quote }}
    - name: tmp
      emptyDir:
        sizeLimit: {{ $tri.resources.ephemeralStorage | toString | quote }}
    {{- if $V.model.pullSecret }}
    - name: hf-token
      secret:
        secretName: {{ $V.model.pullSecret | quote }}
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
              name: {{ printf "%s-model" $fullname | quote }}
          - secret:
              name: {{ $V.multinode.ssh.existingSecret | quote }}
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
