"""The model spec: one typed description of a deployment, read from the chart's values.

Field names are the chart's values keys, which start from the NVIDIA tutorials' keys
(shared SEED-VALUES.md). The chart renders the `gpu` and `model` sections into the
ConfigMap `model.yaml`; a whole values file is accepted too (its other sections are
the chart's business and are not read here).

`model` holds the typed spec and its values form, `fields` reads typed keys with one-line
errors, `parse` validates a document into a spec, `values` merges values documents as Helm does,
`reading` reads files and `--set`. Library use:

    from llmprep.spec import load_spec, parse_spec
    spec = load_spec([Path("chart/models/gpt2.yaml")], sets=["model.tensorrtLlm.dataType=bfloat16"])
    spec = parse_spec({"model": {"name": "gpt2"}})
"""

from llmprep.spec.fields import INT32_MAX
from llmprep.spec.model import (
    BATCHING_STRATEGIES,
    CHART_SECTIONS,
    DATA_TYPES,
    DEFAULT_SERVER_OPTIONS,
    KNOWN_MODELS,
    LOGITS_DATATYPES,
    RESERVED_SERVER_OPTIONS,
    RUNTIMES,
    STANDIN_COMPUTE,
    BuildLimits,
    Conversion,
    ModelSpec,
    Parallelism,
    RepositoryOptions,
    StandinOptions,
)
from llmprep.spec.parse import MAX_PARALLEL, parse_spec, read_server_options
from llmprep.spec.reading import dump_spec, load_spec, read_yaml
from llmprep.spec.values import deep_merge, set_path

__all__ = [
    "BATCHING_STRATEGIES",
    "BuildLimits",
    "CHART_SECTIONS",
    "Conversion",
    "DATA_TYPES",
    "DEFAULT_SERVER_OPTIONS",
    "deep_merge",
    "dump_spec",
    "INT32_MAX",
    "KNOWN_MODELS",
    "load_spec",
    "LOGITS_DATATYPES",
    "MAX_PARALLEL",
    "ModelSpec",
    "Parallelism",
    "parse_spec",
    "read_server_options",
    "read_yaml",
    "RepositoryOptions",
    "RESERVED_SERVER_OPTIONS",
    "RUNTIMES",
    "set_path",
    "STANDIN_COMPUTE",
    "StandinOptions",
]
