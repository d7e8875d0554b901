"""What each values key does to the rendered objects, case by case."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmprep import chart
from llmprep.errors import SpecError
from tests.chart.conftest import RELEASE, TUTORIAL_SINGLE, Objects, container, one, render
from tests.conftest import TUTORIAL_VALUES


def _pod(objects: Objects) -> dict[str, Any]:
    return one(objects, "Deployment")["spec"]["template"]


def _gpu_products(objects: Objects) -> list[str]:
    terms = _pod(objects)["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (expression,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("nvidia.com/gpu.product", "In")
    return list(expression["values"])


@pytest.mark.parametrize(
    ("tensor", "pipeline", "gpus"), [(1, 1, "1"), (2, 1, "2"), (4, 1, "4"), (2, 2, "4"), (8, 2, "16")]
)
def test_gpus_per_pod_are_tensor_times_pipeline_on_both_containers(tensor: int, pipeline: int, gpus: str) -> None:
    # A 16-GPU node keeps 16 GPUs in one pod (more than multinode.gpusPerNode would make a LeaderWorkerSet).
    objects = render(
        sets=[
            f"model.tensorrtLlm.parallelism.tensor={tensor}",
            f"model.tensorrtLlm.parallelism.pipeline={pipeline}",
            "multinode.gpusPerNode=16",
        ]
    )
    for name in ("prepare", "triton"):
        resources = container(objects, name)["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == gpus


@pytest.mark.parametrize(
    ("tensor", "cpu", "memory"), [(1, "4", "32Gi"), (2, "4", "32Gi"), (4, "4", "32Gi"), (8, "8", "64Gi")]
)
def test_triton_resources_default_to_the_tutorials_formula(tensor: int, cpu: str, memory: str) -> None:
    resources = container(render(sets=[f"model.tensorrtLlm.parallelism.tensor={tensor}"]))["resources"]
    assert (resources["limits"]["cpu"], resources["limits"]["memory"]) == (cpu, memory)
    assert resources["requests"] == resources["limits"]


def test_triton_resources_from_values_win_over_the_formula() -> None:
    resources = container(render(sets=["triton.resources.cpu=12", "triton.resources.memory=100Gi"]))["resources"]
    assert (resources["limits"]["cpu"], resources["limits"]["memory"]) == ("12", "100Gi")


def test_every_container_has_requests_and_limits_of_cpu_memory_and_ephemeral_storage(defaults: Objects) -> None:
    for name in ("prepare", "triton"):
        resources = container(defaults, name)["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory", "ephemeral-storage"} <= set(resources[kind]), (name, kind)


@pytest.mark.parametrize(
    ("sets", "products"),
    [
        ([], ["NVIDIA-H100-80GB-HBM3"]),
        (["gpu={Tesla-T4,Tesla-V100-SXM2-16GB}"], ["Tesla-T4", "Tesla-V100-SXM2-16GB"]),
        (["gpu=NVIDIA-A10G"], ["NVIDIA-A10G"]),  # the multi-node tutorial's single string
    ],
)
def test_node_affinity_lists_every_gpu_sku(sets: list[str], products: list[str]) -> None:
    assert _gpu_products(render(sets=sets)) == products


def test_gpu_toleration_comes_first_then_the_users(defaults: Objects) -> None:
    extra = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    objects = render(
        sets=[
            "kubernetes.tolerations[0].key=dedicated",
            "kubernetes.tolerations[0].operator=Exists",
            "kubernetes.tolerations[0].effect=NoSchedule",
        ]
    )
    tolerations = _pod(objects)["spec"]["tolerations"]
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert tolerations == [gpu, extra]
    assert _pod(defaults)["spec"]["tolerations"] == [gpu]


@pytest.mark.parametrize(
    "sets",
    [["kubernetes.labels.model=llama-3-8b"], ["kubernetes.labels[0].model=llama-3-8b"]],
    ids=["map form", "tutorials' list form"],
)
def test_no_service_removes_the_service_and_keeps_the_pool_labels(sets: list[str]) -> None:
    objects = render(sets=[*sets, "kubernetes.noService=true"])
    assert not chart.find(objects, "Service")
    assert _pod(objects)["metadata"]["labels"]["model"] == "llama-3-8b"
    assert one(objects, "Deployment")["metadata"]["labels"]["model"] == "llama-3-8b"


def test_service_exposes_http_grpc_and_metrics_and_selects_the_pods(defaults: Objects) -> None:
    service = one(defaults, "Service")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    labels = _pod(defaults)["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())


PROVEN = [("trtllm:requests_waiting", "2"), ("triton:pending_requests", "2")]


def _hpa_metrics(objects: Objects) -> list[tuple[str, str]]:
    hpa = one(objects, "HorizontalPodAutoscaler")
    return [(m["pods"]["metric"]["name"], m["pods"]["target"]["averageValue"]) for m in hpa["spec"]["metrics"]]


@pytest.mark.parametrize(
    ("files", "sets", "metrics"),
    [
        # The signals the lab proved (docs/signals.md); the tutorials' ratio only where a values file asks.
        ([], [], PROVEN),
        (
            [TUTORIAL_VALUES / "single" / "llama-2-7b-chat_values.yaml"],
            [],
            [("triton:queue_compute:ratio", "1500m"), *PROVEN],
        ),
        (
            [TUTORIAL_VALUES / "single" / "llama-3-70b-instruct_values.yaml"],
            [],
            [("triton:queue_compute:ratio", "3500m"), *PROVEN],
        ),
        (
            [],
            ["autoscaling.metric.name=triton:request_duration:average", "autoscaling.metric.value=250000"],
            [("triton:request_duration:average", "250000"), *PROVEN],
        ),
        (
            [],
            [
                "autoscaling.metric.name=triton:queue_compute:ratio",
                "autoscaling.metrics[0].name=trtllm:requests_waiting",
                "autoscaling.metrics[0].value=2",
            ],
            [("triton:queue_compute:ratio", "1000m"), ("trtllm:requests_waiting", "2")],
        ),
        (
            [],
            [
                "autoscaling.metric.name=",
                "autoscaling.metrics[0].name=trtllm:kv_cache:utilization",
                "autoscaling.metrics[0].value=800m",
            ],
            [("trtllm:kv_cache:utilization", "800m")],
        ),
    ],
    ids=["default", "1500m from a tutorial file", "3500m", "another single metric", "several", "list only"],
)
def test_hpa_reads_the_named_metrics_and_targets(files: list[Any], sets: list[str], metrics: list[Any]) -> None:
    objects = render(files, sets)
    assert _hpa_metrics(objects) == metrics
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": RELEASE}


@pytest.mark.parametrize(
    ("sets", "behavior"),
    [
        (
            [],
            {
                "scaleDown": {
                    "stabilizationWindowSeconds": 120,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        ),
        (["autoscaling.behavior=null"], None),
    ],
    ids=["a 120 s window, one pod a minute by default", "null: Kubernetes' defaults"],
)
def test_hpa_behavior_defaults_to_removing_one_pod_a_minute_after_a_shorter_window(
    sets: list[str], behavior: Any
) -> None:
    assert one(render(sets=sets), "HorizontalPodAutoscaler")["spec"].get("behavior") == behavior


def test_hpa_replicas_and_behavior_pass_through() -> None:
    objects = render(
        sets=[
            "autoscaling.replicas.minimum=2",
            "autoscaling.replicas.maximum=9",
            "autoscaling.behavior.scaleDown.stabilizationWindowSeconds=600",
        ]
    )
    spec = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 9)
    # Helm merges maps: the chart's one-pod-a-minute policy stays beside the user's window.
    assert spec["behavior"] == {
        "scaleDown": {
            "stabilizationWindowSeconds": 600,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    assert "replicas" not in one(objects, "Deployment")["spec"]


def test_autoscaling_off_fixes_the_replicas_at_the_minimum() -> None:
    objects = render(sets=["autoscaling.enable=false", "autoscaling.replicas.minimum=3"])
    assert not chart.find(objects, "HorizontalPodAutoscaler") and not chart.find(objects, "ScaledObject")
    assert one(objects, "Deployment")["spec"]["replicas"] == 3


def test_keda_engine_renders_a_scaled_object_instead_of_the_hpa() -> None:
    objects = render(
        sets=[
            "autoscaling.engine=keda",
            "autoscaling.metric.value=1500m",
            "autoscaling.metrics[0].name=trtllm:requests_waiting",
            "autoscaling.metrics[0].value=2",
            "autoscaling.behavior.scaleUp.stabilizationWindowSeconds=0",
        ]
    )
    assert not chart.find(objects, "HorizontalPodAutoscaler")
    scaled = one(objects, "ScaledObject")
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == RELEASE
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {
            "stabilizationWindowSeconds": 120,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }
    triggers = [
        (t["type"], t["metricType"], t["metadata"]["query"], t["metadata"]["threshold"]) for t in spec["triggers"]
    ]
    selector = 'namespace="llm",pod=~"gpt2-[a-z0-9]+-[a-z0-9]+"'
    assert triggers == [
        ("prometheus", "AverageValue", f"sum(triton:queue_compute:ratio{{{selector}}})", "1.5"),
        ("prometheus", "AverageValue", f"sum(trtllm:requests_waiting{{{selector}}})", "2"),
    ]


def _cache_volume(objects: Objects) -> dict[str, Any]:
    return next(v for v in _pod(objects)["spec"]["volumes"] if v["name"] == "cache")


@pytest.mark.parametrize(
    ("sets", "volume", "claims"),
    [
        ([], {"name": "cache", "hostPath": {"path": "/triton", "type": "DirectoryOrCreate"}}, []),
        (
            ["kubernetes.hostRootPath=/mnt/llm"],
            {"name": "cache", "hostPath": {"path": "/mnt/llm", "type": "DirectoryOrCreate"}},
            [],
        ),
        (
            ["model.persistentVolumeClaim=nfs-claim"],
            {"name": "cache", "persistentVolumeClaim": {"claimName": "nfs-claim"}},
            [],
        ),
        (
            ["cache.persistentVolumeClaim.create=true", "cache.persistentVolumeClaim.storageClass=efs"],
            {"name": "cache", "persistentVolumeClaim": {"claimName": "gpt2-cache"}},
            ["gpt2-cache"],
        ),
    ],
    ids=["host path", "other host path", "existing claim", "created claim"],
)
def test_cache_modes(sets: list[str], volume: dict[str, Any], claims: list[str]) -> None:
    objects = render(sets=sets)
    assert _cache_volume(objects) == volume
    assert [c["metadata"]["name"] for c in chart.find(objects, "PersistentVolumeClaim")] == claims
    for name in ("prepare", "triton"):
        assert {"name": "cache", "mountPath": "/cache"} in container(objects, name)["volumeMounts"]


def test_created_claim_uses_the_storage_class_size_and_is_kept_on_uninstall() -> None:
    objects = render(
        sets=[
            "cache.persistentVolumeClaim.create=true",
            "cache.persistentVolumeClaim.storageClass=efs",
            "cache.persistentVolumeClaim.size=500Gi",
        ]
    )
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "efs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "500Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("runtime", ["auto", "engine", "pytorch"])
def test_runtime_choice_reaches_the_model_spec(runtime: str) -> None:
    objects = render(sets=[f"model.tensorrtLlm.runtime={runtime}"])
    config = chart.find(objects, "ConfigMap", f"{RELEASE}-model")[0]
    assert yaml.safe_load(config["data"]["model.yaml"])["model"]["tensorrtLlm"]["runtime"] == runtime


def test_a_changed_model_spec_changes_the_pod_checksum() -> None:
    def checksum(sets: list[str]) -> str:
        return str(_pod(render(sets=sets))["metadata"]["annotations"]["checksum/model-spec"])

    assert checksum([]) == checksum([])
    assert checksum([]) != checksum(["model.tensorrtLlm.dataType=bfloat16"])


@pytest.mark.parametrize(
    ("pull_secret", "prepare_args"),
    [
        (None, ["llmprep", "prepare", "--spec", "/etc/llmprep/model.yaml", "--cache", "/cache"]),
        (
            "hf-model-pull",
            [
                "llmprep",
                "prepare",
                "--spec",
                "/etc/llmprep/model.yaml",
                "--cache",
                "/cache",
                "--token-file",
                "/var/run/secrets/hf/password",
            ],
        ),
    ],
)
def test_prepare_command_and_the_token_mounted_as_a_file(pull_secret: str | None, prepare_args: list[str]) -> None:
    objects = render(sets=[f"model.pullSecret={pull_secret}"] if pull_secret else [])
    prepare = container(objects, "prepare")
    assert prepare["command"] == prepare_args
    mounts = {m["name"]: m for m in prepare["volumeMounts"]}
    secrets = [v for v in _pod(objects)["spec"]["volumes"] if "secret" in v]
    if pull_secret:
        assert mounts["hf-token"] == {"name": "hf-token", "mountPath": "/var/run/secrets/hf", "readOnly": True}
        assert secrets[0]["secret"]["secretName"] == pull_secret
        assert "hf-token" not in {m["name"] for m in container(objects)["volumeMounts"]}  # init container only
    else:
        assert "hf-token" not in mounts and not secrets


def test_serve_command_uses_the_fixed_ports_and_the_drain_timeout() -> None:
    triton = container(render(sets=["triton.exitTimeoutSeconds=120"]))
    assert triton["command"] == [
        "llmprep",
        "serve",
        "--spec",
        "/etc/llmprep/model.yaml",
        "--cache",
        "/cache",
        "--http-port",
        "8000",
        "--grpc-port",
        "8001",
        "--metrics-port",
        "8002",
        "--exit-timeout-secs",
        "120",
    ]
    assert [(p["name"], p["containerPort"]) for p in triton["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]


def test_probes_and_the_drain_fit_inside_the_grace_period(defaults: Objects) -> None:
    triton = container(defaults)
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800  # a cold engine load
    hook = triton["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:6] == ["llmprep", "drain", "--port", "8000", "--port", "8001"]  # HTTP and gRPC, not metrics
    pause, wait = int(hook[hook.index("--pause") + 1]), int(hook[hook.index("--timeout") + 1])
    assert (pause, wait) == (15, 60)
    grace = _pod(defaults)["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + wait + int(triton["command"][-1])


@pytest.mark.parametrize(("pre_stop", "drain", "exit_timeout"), [(0, 0, 0), (5, 300, 30), (30, 10, 600)])
def test_the_grace_period_is_the_pause_plus_the_drain_plus_the_exit_timeout(
    pre_stop: int, drain: int, exit_timeout: int
) -> None:
    objects = render(
        sets=[
            f"triton.preStopSeconds={pre_stop}",
            f"triton.drainTimeoutSeconds={drain}",
            f"triton.exitTimeoutSeconds={exit_timeout}",
        ]
    )
    hook = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[-4:] == ["--pause", str(pre_stop), "--timeout", str(drain)]
    assert _pod(objects)["spec"]["terminationGracePeriodSeconds"] == pre_stop + drain + exit_timeout + 15


def test_pods_run_as_non_root_with_a_read_only_root_and_no_capabilities(defaults: Objects) -> None:
    pod = _pod(defaults)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for name in ("prepare", "triton"):
        context = container(defaults, name)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]


def test_extra_environment_reaches_both_containers() -> None:
    objects = render(sets=["triton.env[0].name=NCCL_DEBUG", "triton.env[0].value=INFO"])
    for name in ("prepare", "triton"):
        assert {"name": "NCCL_DEBUG", "value": "INFO"} in container(objects, name)["env"]


def test_shared_memory_is_a_memory_volume_of_the_given_size() -> None:
    objects = render(sets=["triton.shmSize=16Gi"])
    shm = next(v for v in _pod(objects)["spec"]["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_pull_secrets_and_service_account_pass_through() -> None:
    objects = render([TUTORIAL_VALUES / "multinode" / "values.yaml"])
    pod = _pod(objects)["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ngc-container-pull"}]
    assert pod["serviceAccountName"] == "default"


@pytest.mark.parametrize(
    ("setting", "api_versions", "rendered"),
    [
        ("auto", (), False),
        ("auto", ("monitoring.coreos.com/v1",), True),
        ("true", (), True),
        ("false", ("monitoring.coreos.com/v1",), False),
    ],
)
def test_monitoring_switches(setting: str, api_versions: tuple[str, ...], rendered: bool) -> None:
    objects = render(
        sets=[f"monitoring.podMonitor.enabled={setting}", f"monitoring.prometheusRule.enabled={setting}"],
        api_versions=api_versions,
    )
    assert bool(chart.find(objects, "PodMonitor")) is rendered
    assert bool(chart.find(objects, "PrometheusRule")) is rendered


def test_api_versions_can_come_from_the_values_as_in_helm_template() -> None:
    objects = render(sets=["monitoring.apiVersions[0]=monitoring.coreos.com/v1"], api_versions=())
    assert chart.find(objects, "PodMonitor")


def test_pod_monitor_scrapes_the_metrics_port_at_the_tutorials_interval(defaults: Objects) -> None:
    monitor = one(defaults, "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "6s"}]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"]["app"] == RELEASE


def test_disruption_budget_and_network_policy_select_the_release(defaults: Objects) -> None:
    budget = one(defaults, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    policy = one(defaults, "NetworkPolicy")
    ports = sorted(p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"])
    assert ports == [8000, 8001, 8002]
    labels = _pod(defaults)["metadata"]["labels"]
    assert all(labels[k] == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())


def test_helm_test_pod_is_a_test_hook_outside_the_release_selectors(defaults: Objects) -> None:
    pod = one(defaults, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    selector = one(defaults, "Service")["spec"]["selector"]
    assert not all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert "gpt2.llm.svc:8000" in pod["spec"]["containers"][0]["command"][-1]


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["model.tensorrtLlm.parallelism.tensor=0"], "model.tensorrtLlm.parallelism.tensor"),
        (["model.tensorrtLlm.parallelism.tensor=two"], "model.tensorrtLlm.parallelism.tensor"),
        (["gpu={}"], "gpu"),
        (["gpu="], "gpu"),
        (["bogus=1"], "bogus"),
        (["model.tensorrtLlm.dataTyp=float16"], "dataTyp"),
        (["autoscaling.replicas.minimum=-1"], "autoscaling.replicas.minimum"),
        (["autoscaling.replicas.maximum=-2"], "autoscaling.replicas.maximum"),
        (["autoscaling.replicas.minimum=5", "autoscaling.replicas.maximum=2"], "autoscaling.replicas.maximum"),
        (["model.tensorrtLlm.dataType=int4"], "model.tensorrtLlm.dataType"),
        (["autoscaling.engine=argo"], "autoscaling.engine"),
        (["autoscaling.metric.value=lots"], "autoscaling.metric.value"),
        (["monitoring.podMonitor.enabled=maybe"], "monitoring.podMonitor.enabled"),
        (["monitoring.prometheusRule.window=1 minute"], "monitoring.prometheusRule.window"),
        (["model.tensorrtLlm.maxInputLen=8192"], "model.tensorrtLlm.maxInputLen"),
        (["triton.image.name="], "triton.image.name"),
        (["kubernetes.labels.app=other"], "kubernetes.labels.app"),
        (["kubernetes.labels[0].app\\.kubernetes\\.io/name=x"], "kubernetes.labels.app.kubernetes.io/name"),
    ],
)
def test_bad_values_fail_naming_the_key(sets: list[str], key: str) -> None:
    with pytest.raises(SpecError, match=key.replace(".", r"\.")):
        render(sets=sets)


@pytest.mark.parametrize("path", TUTORIAL_SINGLE, ids=[p.name for p in TUTORIAL_SINGLE])
def test_tutorial_keys_that_do_nothing_are_still_accepted(path: Any) -> None:
    objects = render([path], ["logging.tritonServer.verbose=true", "model.tensorrtLlm.enable=true"])
    assert one(objects, "Deployment")
