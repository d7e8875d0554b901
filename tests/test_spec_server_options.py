"""`triton.serverOptions`: tritonserver options as values, validated in the spec and the schema, appended by `llmprep serve`.

The default turns on Triton's latency histograms (`--metrics-config=histogram_latencies=true`,
read in Triton core's metric_model_reporter.cc, tests/data/triton_latency_metrics.csv). Run here:
the wheel's Triton 2.51 (core r24.10, which predates the setting) starts with it, serves a
decoupled model and exports no `nv_inference_first_response_histogram_ms`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llmprep import chart
from llmprep.errors import SpecError
from llmprep.serve import ServeOptions, ServeRequest, compose, make_plan, rank_args
from llmprep.serve.triton import TritonInstall
from llmprep.spec import DEFAULT_SERVER_OPTIONS, RESERVED_SERVER_OPTIONS, dump_spec, load_spec, parse_spec
from tests.chart.conftest import render
from tests.conftest import ROOT

NGC = TritonInstall(
    binary=Path("/opt/tritonserver/bin/tritonserver"), backend_dir=Path("/opt/tritonserver/backends"), source="path"
)
REPOSITORY = Path("/cache/repos/0123abcd")
MINE = ("--log-verbose=1", "--pinned-memory-pool-byte-size=268435456")


def _spec(options: Any) -> dict[str, Any]:
    return {"model": {"name": "gpt2"}, "triton": {"serverOptions": options, "shmSize": "4Gi"}}


def _compose(runtime: str, world: int, options: tuple[str, ...] = MINE) -> list[str]:
    plan = compose(
        runtime=runtime,
        repository=REPOSITORY,
        tensor=world,
        pipeline=1,
        options=ServeOptions(),
        triton=NGC,
        server_options=options,
    )
    return plan.argv


def _contexts(argv: list[str]) -> list[list[str]]:
    """An MPMD command line's app contexts (split at `:`)."""
    out: list[list[str]] = [[]]
    for arg in argv:
        if arg == ":":
            out.append([])
        else:
            out[-1].append(arg)
    return out


# --------------------------------------------------------------------------- the spec


def test_a_spec_without_server_options_turns_the_latency_histograms_on() -> None:
    assert parse_spec({"model": {"name": "gpt2"}}).server_options == ("--metrics-config=histogram_latencies=true",)


def test_server_options_are_read_and_the_rest_of_the_triton_section_is_left_to_the_chart() -> None:
    assert parse_spec(_spec(list(MINE))).server_options == MINE


def test_an_empty_list_turns_every_server_option_off_including_the_histograms() -> None:
    assert parse_spec(_spec([])).server_options == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--log-verbose=1", r"^triton\.serverOptions: must be a list of --flag=value strings, got string"),
        (
            ["--log-verbose=1", "log-verbose=1"],
            r"^triton\.serverOptions\[1\]: must be a tritonserver option starting with --",
        ),
        ([3], r"^triton\.serverOptions\[0\]: must be a tritonserver option starting with --, .*got number 3"),
        (["--"], r"^triton\.serverOptions\[0\]: must be a tritonserver option"),
        (
            ["--log-verbose 1"],
            r"^triton\.serverOptions\[0\]: .* contains whitespace; write the option and its value as one",
        ),
    ],
)
def test_a_malformed_server_option_is_a_one_line_error_naming_its_index(options: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_spec(_spec(options))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("flag", sorted(RESERVED_SERVER_OPTIONS))
def test_an_option_llmprep_sets_itself_is_refused_naming_the_key_and_the_flag(flag: str) -> None:
    with pytest.raises(
        SpecError, match=rf"^triton\.serverOptions\[1\]: {flag} is set by llmprep serve itself; remove it \("
    ):
        parse_spec(_spec(["--log-verbose=1", f"{flag}=9000"]))


def test_server_options_survive_a_dump_and_a_load(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(dump_spec(parse_spec(_spec(list(MINE)))))
    assert load_spec([path]).server_options == MINE


def test_a_spec_with_the_default_options_dumps_no_triton_section() -> None:
    assert "triton" not in parse_spec({"model": {"name": "gpt2"}}).to_values()


def test_every_flag_llmprep_serve_sets_on_any_rank_is_reserved() -> None:
    """The refusal list stays in step with what compose writes (not counting the flags that may repeat)."""
    written = {arg.split("=", 1)[0] for rank in (0, 1) for arg in rank_args(rank, REPOSITORY, ServeOptions(), NGC)}
    assert written - {"--disable-auto-complete-config", "--backend-config"} <= set(RESERVED_SERVER_OPTIONS)


# --------------------------------------------------------------------------- the command line


def test_one_rank_appends_the_options_after_llmprep_own_flags() -> None:
    argv = _compose("engine", 1)
    assert argv[0] == str(NGC.binary) and argv[-2:] == list(MINE)


def test_the_engine_layout_gives_the_options_to_the_serving_rank_only() -> None:
    first, *others = _contexts(_compose("engine", 4))
    assert first[-2:] == list(MINE)
    assert others and all(not set(MINE) & set(context) for context in others)


def test_the_pytorch_layout_gives_the_options_to_its_one_tritonserver() -> None:
    argv = _compose("pytorch", 2)
    assert argv.count(MINE[0]) == 1 and argv[-2:] == list(MINE)


def test_the_plan_says_which_options_came_from_the_values() -> None:
    plan = compose(
        runtime="engine",
        repository=REPOSITORY,
        tensor=1,
        pipeline=1,
        options=ServeOptions(),
        triton=NGC,
        server_options=MINE,
    )
    assert f"triton.serverOptions): {' '.join(MINE)}" in plan.description


def test_without_options_the_serving_rank_ends_with_llmprep_own_flags() -> None:
    first = _contexts(_compose("engine", 2, ()))[0]
    assert first[-1] == "--backend-config=python,shm-region-prefix-name=prefix0_"


# --------------------------------------------------------------------------- the chart


def test_the_chart_default_is_the_spec_default() -> None:
    values = yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())
    assert tuple(values["triton"]["serverOptions"]) == DEFAULT_SERVER_OPTIONS


def _pod_spec(objects: list[dict[str, Any]]) -> Any:
    """The model spec the pod reads: the ConfigMap's model.yaml, through llmprep's own parser."""
    (config,) = [o for o in chart.find(objects, "ConfigMap") if "model.yaml" in o.get("data", {})]
    return parse_spec(yaml.safe_load(config["data"]["model.yaml"]))


def test_the_chart_carries_its_server_options_into_the_pod_spec() -> None:
    objects = render(sets=["triton.serverOptions[0]=--log-verbose=1"])
    assert _pod_spec(objects).server_options == ("--log-verbose=1",)


def test_the_chart_default_options_reach_the_pod_spec() -> None:
    assert _pod_spec(render()).server_options == DEFAULT_SERVER_OPTIONS


def test_an_empty_list_in_the_values_turns_the_options_off_in_the_pod() -> None:
    values = chart.merge_values([], ["triton.image.name=registry.example.com/llmprep-triton:26.07"])
    values["triton"]["serverOptions"] = []
    objects = chart.render(values)
    assert _pod_spec(objects).server_options == ()


@pytest.mark.parametrize(
    "option", ["--http-port=9000", "--model-control-mode=explicit", "log-verbose=1", "--log-verbose 1"]
)
def test_the_schema_refuses_a_reserved_or_malformed_option_at_install(option: str) -> None:
    values = chart.merge_values([], ["triton.image.name=registry.example.com/llmprep-triton:26.07"])
    values["triton"]["serverOptions"] = [option]
    with pytest.raises(SpecError, match="serverOptions"):
        chart.render(values)


def test_serve_takes_the_options_from_the_spec_it_reads() -> None:
    spec = parse_spec(_spec(["--log-verbose=1"]))
    plan = make_plan(ServeRequest(spec, repository=ROOT / "tests" / "data" / "gate_repo"), env={}, triton=NGC)
    assert plan.argv[-1] == "--log-verbose=1" and DEFAULT_SERVER_OPTIONS[0] not in plan.argv


def test_serve_without_a_spec_keeps_the_default_options() -> None:
    plan = make_plan(ServeRequest(None, repository=ROOT / "tests" / "data" / "gate_repo"), env={}, triton=NGC)
    assert plan.argv[-1] == DEFAULT_SERVER_OPTIONS[0]
