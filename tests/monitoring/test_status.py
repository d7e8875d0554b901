from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from rich.console import Console

from llmprep.status import ReleaseStatus, collect, connect, parse_quantity, render, show_quantity, watch
from tests.conftest import ROOT, free_port, run_cli
from tests.monitoring.k8s_api import FakeKubernetes

SCENARIOS = ROOT / "tests" / "data" / "k8s"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    """The API server answering from the scenario named by the test's `scenario` parameter."""
    with FakeKubernetes(SCENARIOS / request.param) as api:
        yield api, api.kubeconfig(tmp_path / "kubeconfig")


def status_of(cluster: tuple[FakeKubernetes, Path], release: str = "gpt2") -> ReleaseStatus:
    return collect(connect(str(cluster[1])), release, "llm")


def text_of(status: ReleaseStatus) -> str:
    console = Console(file=io.StringIO(), width=400, record=True)
    console.print(render(status, now=NOW))
    return console.export_text()


@pytest.mark.parametrize(
    ("text", "value"),
    [("1500m", 1.5), ("2", 2.0), ("250u", 0.00025), ("1Ki", 1024.0), ("1.5G", 1.5e9), ("1e3", 1000.0), ("3k", 3000.0)],
)
def test_kubernetes_quantities_are_read_as_numbers(text: str, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "shown"), [("1500m", "1500m (1.5)"), ("6", "6"), (None, "<unknown>")])
def test_quantities_are_shown_with_their_decimal_value(text: str | None, shown: str) -> None:
    assert show_quantity(text) == shown


@pytest.mark.parametrize("scenario", sorted(p.name for p in SCENARIOS.iterdir()))
def test_every_recorded_object_is_valid_for_kubernetes_1_30(scenario: str) -> None:
    for path in sorted((SCENARIOS / scenario).glob("*.json")):
        document = json.loads(path.read_text())
        for item in document.get("items", []) if isinstance(document, dict) else []:
            kubernetes_validate.validate(item, "1.30", strict=True)


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_each_metric_shows_its_current_and_target_value(cluster: tuple[FakeKubernetes, Path]) -> None:
    (hpa,) = status_of(cluster).autoscalers
    assert [(m.name, m.current, m.target) for m in hpa.metrics] == [
        ("triton:queue_compute:ratio", "2150m (2.15)", "1500m (1.5) average per pod"),
        ("trtllm:requests_waiting", "6", "4 average per pod"),
    ]


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_replicas_readiness_and_only_this_releases_objects_are_shown(cluster: tuple[FakeKubernetes, Path]) -> None:
    status = status_of(cluster)
    (hpa,) = status.autoscalers
    assert (hpa.name, hpa.target, hpa.current_replicas, hpa.desired_replicas) == ("gpt2", "Deployment/gpt2", 2, 3)
    assert [(p.name.rsplit("-", 1)[1], p.ready) for p in status.pods] == [
        ("m2c9d", False),
        ("q8v7n", True),
        ("x4k2p", True),
    ]
    assert status.problems == []


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_the_last_five_scaling_events_of_the_hpa_are_shown_oldest_first(cluster: tuple[FakeKubernetes, Path]) -> None:
    (hpa,) = status_of(cluster).autoscalers
    assert [e.time[11:16] for e in hpa.events] == ["11:24", "11:31", "11:38", "11:45", "11:52"]
    assert all(e.reason == "SuccessfulRescale" and "cpu" not in e.message for e in hpa.events)


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_pods_are_selected_by_the_scaled_deployments_selector(cluster: tuple[FakeKubernetes, Path]) -> None:
    status_of(cluster)
    pod_requests = [r for r in cluster[0].requests if "/pods" in r]
    assert pod_requests == [
        "/api/v1/namespaces/llm/pods?labelSelector=app.kubernetes.io/instance%3Dgpt2%2Capp.kubernetes.io/name%3Dllmprep"
    ]


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_the_rendered_view_puts_the_signal_beside_the_replicas(cluster: tuple[FakeKubernetes, Path]) -> None:
    text = text_of(status_of(cluster))
    assert "replicas 2 → 3  (min 1, max 4)" in text
    assert "triton:queue_compute:ratio  Pods  2150m (2.15)" in text
    assert "pods: 2/3 ready" in text


@pytest.mark.parametrize("cluster", ["forbidden"], indirect=True)
def test_rbac_denials_are_one_line_each_and_the_rest_is_still_shown(cluster: tuple[FakeKubernetes, Path]) -> None:
    status = status_of(cluster)
    assert status.autoscalers and status.autoscalers[0].metrics
    assert status.problems == [
        "cannot read events of HPA gpt2 in namespace llm: forbidden by RBAC (events is forbidden: User "
        '"system:serviceaccount:llm:viewer" cannot list resource "events" in API group "" in the namespace "llm")',
        "cannot read pods in namespace llm: forbidden by RBAC (pods is forbidden: User "
        '"system:serviceaccount:llm:viewer" cannot list resource "pods" in API group "" in the namespace "llm")',
    ]


@pytest.mark.parametrize("cluster", ["forbidden-hpa"], indirect=True)
def test_a_denied_hpa_list_is_one_line_and_pods_are_found_by_the_release_label(
    cluster: tuple[FakeKubernetes, Path],
) -> None:
    status = status_of(cluster)
    assert status.problems == [
        "cannot read HorizontalPodAutoscalers in namespace llm: forbidden by RBAC (horizontalpodautoscalers.autoscaling "
        'is forbidden: User "system:serviceaccount:llm:viewer" cannot list resource "horizontalpodautoscalers" in API '
        'group "autoscaling" in the namespace "llm")'
    ]
    assert len(status.pods) == 3


@pytest.mark.parametrize("cluster", ["metric-missing"], indirect=True)
def test_a_metric_the_adapter_does_not_serve_shows_unknown_and_why(cluster: tuple[FakeKubernetes, Path]) -> None:
    status = status_of(cluster)
    assert [m.current for m in status.autoscalers[0].metrics] == ["<unknown>", "6"]
    (problem,) = status.problems
    assert problem.startswith("HPA gpt2: ScalingActive is False (FailedGetPodsMetric):")
    assert "no metrics returned from custom metrics API" in problem


@pytest.mark.parametrize(
    ("cluster", "problem"),
    [
        ("no-hpa", "no HorizontalPodAutoscaler labelled app.kubernetes.io/instance=gpt2 or app=gpt2 in namespace llm"),
        ("missing-deployment", "HPA gpt2 scales Deployment gpt2, which does not exist in llm"),
    ],
    indirect=["cluster"],
)
def test_a_missing_object_is_one_line_naming_it(cluster: tuple[FakeKubernetes, Path], problem: str) -> None:
    status = status_of(cluster)
    assert len(status.problems) == 1 and status.problems[0].startswith(problem)
    assert len(status.pods) == 3


@pytest.mark.parametrize("cluster", ["no-hpa"], indirect=True)
def test_a_release_without_hpa_shows_its_pods_by_the_release_label(cluster: tuple[FakeKubernetes, Path]) -> None:
    assert {p.name[:5] for p in status_of(cluster).pods} == {"gpt2-"}


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_watch_refreshes_the_view_until_told_to_stop(cluster: tuple[FakeKubernetes, Path]) -> None:
    api = connect(str(cluster[1]))
    reads: list[ReleaseStatus] = []

    def read() -> ReleaseStatus:
        reads.append(collect(api, "gpt2", "llm"))
        return reads[-1]

    console = Console(file=io.StringIO(), width=200)
    final = watch(read, console, interval=5, iterations=3, sleep=lambda _: None)
    assert len(reads) == 3 and final is reads[-1]
    assert "triton:queue_compute:ratio" in console.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize("cluster", ["scaling"], indirect=True)
def test_the_cli_prints_json_for_programs_using_the_context_namespace(cluster: tuple[FakeKubernetes, Path]) -> None:
    result = run_cli("status", "gpt2", "--kubeconfig", str(cluster[1]), "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["namespace"] == "llm"
    assert data["autoscalers"][0]["desired_replicas"] == 3


@pytest.mark.parametrize("cluster", ["forbidden"], indirect=True)
def test_the_cli_shows_partial_status_with_problem_lines(cluster: tuple[FakeKubernetes, Path]) -> None:
    result = run_cli("status", "gpt2", "-n", "llm", "--kubeconfig", str(cluster[1]))
    assert result.returncode == 0, result.stderr
    assert "forbidden by RBAC" in result.stdout and "Traceback" not in result.stderr


def test_an_unreachable_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    result = run_cli("status", "gpt2", "--kubeconfig", str(kubeconfig))
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the Kubernetes API") and "Traceback" not in result.stderr


def test_missing_credentials_are_a_one_line_error_naming_the_option(tmp_path: Path) -> None:
    result = run_cli("status", "gpt2", "--kubeconfig", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.startswith("error: no Kubernetes credentials") and "--kubeconfig" in result.stderr
