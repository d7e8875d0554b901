"""The cluster side: `chart` (render and lint the Helm chart without a helm binary) and `status`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from llmprep.cli.options import JsonOption, console, emit_json

chart_app = typer.Typer(
    help="Render or lint the Helm chart as `helm template` / `helm lint` would.", no_args_is_help=True
)
ValuesOption = Annotated[
    list[Path] | None, typer.Option("--values", "-f", help="Values file; repeat to layer files (later wins).")
]
HelmSetOption = Annotated[list[str] | None, typer.Option("--set", help="Helm --set expression, e.g. gpu[0]=NVIDIA-L4.")]


ChartOption = Annotated[
    Path | None, typer.Option("--chart", help="Chart folder (default: the chart shipped with llmprep).")
]


def _chart_dir(chart_dir: Path | None) -> Path | None:
    from llmprep.errors import UsageError

    if chart_dir is not None and not (chart_dir / "Chart.yaml").is_file():
        raise UsageError(f"--chart {chart_dir}: no Chart.yaml there; point --chart at the llmprep chart folder")
    return chart_dir


@chart_app.command("template")
def chart_template_cmd(
    release: Annotated[str, typer.Argument(help="Release name.")] = "llmprep",
    values: ValuesOption = None,
    set_: HelmSetOption = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the release.")] = "default",
    api_versions: Annotated[
        list[str] | None, typer.Option("--api-versions", "-a", help="API versions the cluster serves (auto switches).")
    ] = None,
    chart_dir: ChartOption = None,
) -> None:
    """Print the Kubernetes objects the chart renders for these values."""
    from llmprep import chart

    sys.stdout.write(
        chart.template(
            values or [],
            set_ or [],
            release=release,
            namespace=namespace,
            chart_dir=_chart_dir(chart_dir),
            api_versions=api_versions if api_versions is not None else chart.DEFAULT_API_VERSIONS,
        )
    )


@chart_app.command("lint")
def chart_lint_cmd(
    values: ValuesOption = None,
    set_: HelmSetOption = None,
    chart_dir: ChartOption = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also exit 1 on warnings (a pod asking for more GPUs than its nodes have).")
    ] = False,
) -> None:
    """`helm lint --strict` of the chart with these values; exit 1 on findings.

    Then one warning per rendered pod that asks for more nvidia.com/gpu than the usual node of a
    GPU product it may run on has (the chart's files/gpu-nodes.yaml); exit 1 on those only with --strict.
    """
    from llmprep import chart, gpu_fit

    where = _chart_dir(chart_dir)
    merged = chart.merge_values(values or [], set_ or [])
    findings = chart.lint(merged, chart_dir=where)
    for line in findings:
        console.print(line, highlight=False, soft_wrap=True, markup=False)  # findings quote regex patterns: [a-z]
    if findings:
        raise typer.Exit(1)
    table = gpu_fit.chart_table(where or chart.CHART_DIR)
    warned = gpu_fit.warnings(chart.render(merged, chart_dir=where), table) if table else []
    for line in warned:
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if warned and strict:
        raise typer.Exit(1)
    console.print("chart lint: no findings" + (f", {len(warned)} warning(s)" if warned else ""), highlight=False)


def status_cmd(
    release: Annotated[str, typer.Argument(help="Helm release name.")],
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="Namespace of the release (default: the context's).")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh live until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between refreshes with --watch.")
    ] = 5.0,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file (default ~/.kube/config, else in-cluster)."
        ),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context to use.")] = None,
    events: Annotated[int, typer.Option("--events", min=0, help="How many of the HPA's last events to show.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Show a release's HPA metrics (current vs target), replicas, pod readiness and last scaling events."""
    from rich.console import Console as RichConsole

    from llmprep import status

    read = status.release_status(release, namespace, kubeconfig=kubeconfig, context=context, events=events)
    if as_json:
        emit_json(read().to_dict())
    elif watch:
        status.watch(read, RichConsole(), interval=interval)
    else:
        RichConsole().print(status.render(read()))
