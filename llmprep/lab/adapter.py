"""prometheus-adapter's custom-metrics rules, evaluated exactly as the adapter does.

The rules live in one file, `monitoring/prometheus-adapter.values.yaml` (the adapter chart's
`rules.custom`). The cluster installs that file; the lab reads the same file through this
module, so the HPA in the lab sees the value the adapter would serve: one source of truth.

What is reproduced, from kubernetes-sigs/prometheus-adapter (docs/config.md and
pkg/naming/metrics_query.go, pkg/client/helpers.go, pkg/custom-provider/provider.go):
- discovery: `seriesQuery` (a /api/v1/series selector), then `seriesFilters` (`is`/`isNot`);
- naming: `name.matches` (regex, default `.*`) and `name.as` (default `$0`, or `$1` with one
  capture group), expanded like Go's `Regexp.ExpandString`;
- association: `resources.overrides` (label -> resource) and `resources.template`;
- querying: `metricsQuery` is a Go text/template with `<<` `>>` delimiters; for a request on
  pods `a`, `b` in namespace `ns` the adapter sets `.Series` to the Prometheus series name,
  `.LabelMatchers` to the HPA metric selector's matchers, then `namespace="ns"`, then
  `pod=~"a|b"` (`pod="a"` for a single pod), values quoted as Go's `%q` does, joined by `,`;
  `.GroupBy` to the pod label;
- serving: each pod's value becomes a milli-quantity, `int64(value*1000)`, NaN served as 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmprep import files
from llmprep.errors import UsageError
from llmprep.shipped import shipped

ADAPTER_VALUES = shipped("monitoring/prometheus-adapter.values.yaml")  # the wheel's copy, else the checkout's


class AdapterError(UsageError):
    """An adapter rule file or rule is invalid, or no rule exposes the requested metric."""


@dataclass(frozen=True)
class AdapterRule:
    """One prometheus-adapter discovery rule (the fields of one `rules.custom` entry)."""

    series_query: str
    metrics_query: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    resource_template: str | None = None
    name_matches: str = ".*"
    name_as: str = ""
    filters: tuple[tuple[str, str], ...] = ()

    def label_for(self, resource: str) -> str:
        """The Prometheus label naming objects of `resource` ("pod", "namespace", ...)."""
        singular = _singular(resource)
        for label, target in self.overrides.items():
            if _singular(target) == singular:
                return label
        if self.resource_template is not None:
            return render_template(self.resource_template, {"Group": "", "Resource": singular})
        raise AdapterError(
            f"adapter rule {self.series_query!r} maps no label to resource {singular!r}; "
            f"add resources.overrides.<label>: {{resource: {singular}}}"
        )

    def api_name(self, series: str) -> str | None:
        """The custom-metrics API name the adapter gives `series`, or None if the rule skips it."""
        for kind, pattern in self.filters:
            found = re.search(pattern, series) is not None
            if found != (kind == "is"):
                return None
        match = re.search(self.name_matches, series)
        if match is None:
            return None
        template = self.name_as or ("$1" if match.re.groups == 1 else "$0")
        return _expand(template, match)


def _singular(resource: str) -> str:
    resource = resource.split(".")[0].lower()
    return resource[:-1] if resource.endswith("s") and resource not in ("ingress",) else resource


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: $1, ${1}, $name, ${name}, $$; unknown groups expand to ''."""

    def group(name: str) -> str:
        if name.isdigit():
            index = int(name)
            return (match.group(index) or "") if index <= (match.re.groups or 0) else ""
        return (match.groupdict().get(name) or "") if name in match.re.groupindex else ""

    return re.sub(
        r"\$(?:\$|\{(\w+)\}|(\w+))", lambda m: "$" if m.group(0) == "$$" else group(m.group(1) or m.group(2)), template
    )


def _rule_from(entry: Any, index: int, source: Path) -> AdapterRule:
    where = f"{source}: rules.custom[{index}]"
    if not isinstance(entry, Mapping):
        raise AdapterError(f"{where} must be a mapping with seriesQuery, resources, name and metricsQuery")
    for key in ("seriesQuery", "metricsQuery"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise AdapterError(f"{where}.{key} is missing; set it to a PromQL selector / query template")
    resources = entry.get("resources") or {}
    overrides = {
        str(label): str(target.get("resource", ""))
        for label, target in (resources.get("overrides") or {}).items()
        if isinstance(target, Mapping)
    }
    name = entry.get("name") or {}
    filters = tuple(
        (kind, str(f[kind])) for f in entry.get("seriesFilters") or [] for kind in ("is", "isNot") if kind in f
    )
    rule = AdapterRule(
        series_query=entry["seriesQuery"],
        metrics_query=entry["metricsQuery"],
        overrides=overrides,
        resource_template=resources.get("template"),
        name_matches=name.get("matches") or ".*",
        name_as=name.get("as") or "",
        filters=filters,
    )
    groups = re.compile(rule.name_matches).groups
    if groups > 1 and not rule.name_as:
        raise AdapterError(f"{where}.name.as is required: name.matches has {groups} capture groups")
    render_template(rule.metrics_query, _probe_args())  # fail on load, not on the first HPA request
    return rule


def load_rules(path: Path = ADAPTER_VALUES) -> list[AdapterRule]:
    """The custom rules of an adapter values file (`rules.custom`) or adapter config (`rules:` list)."""
    if not Path(path).exists():
        raise AdapterError(f"adapter rules file {path} not found; pass the prometheus-adapter values file")
    data = files.read_yaml(path, "adapter rules file", AdapterError)
    rules = (data or {}).get("rules") if isinstance(data, Mapping) else None
    if isinstance(rules, Mapping):
        rules = rules.get("custom")
    if not isinstance(rules, list) or not rules:
        raise AdapterError(f"{path} has no adapter rules; expected rules.custom (values) or rules (config) as a list")
    return [_rule_from(entry, i, Path(path)) for i, entry in enumerate(rules)]


# -- Go text/template, the part the adapter's fields need --------------------------------------------
_ACTION = re.compile(r"<<(-\s)?\s*(.*?)\s*(\s-)?>>", re.S)


def _go_print(value: Any) -> str:
    """How Go's template prints a value: strings as is, slices as [a b], maps as map[k:v]."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + " ".join(_go_print(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_print(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def render_template(template: str, args: Mapping[str, Any]) -> str:
    """Execute a Go template that uses only field actions (`<<.Series>>`, `<<.LabelValuesByName.pod>>`).

    Trim markers (`<<-`, `->>`) work as in Go. Anything else (if, range, functions) is refused
    with a message, rather than rendered differently from the adapter.
    """
    out: list[str] = []
    pos = 0
    for action in _ACTION.finditer(template):
        text = template[pos : action.start()]
        if action.group(1):
            text = text.rstrip()
        out.append(text)
        expr = action.group(2)
        if not re.fullmatch(r"(\.\w+)+", expr):
            raise AdapterError(f"metricsQuery action <<{expr}>> is not supported; use field actions like <<.Series>>")
        value: Any = args
        for part in expr.split(".")[1:]:
            if not isinstance(value, Mapping) or part not in value:
                raise AdapterError(
                    f"metricsQuery action <<{expr}>>: no field {part!r} (the adapter has "
                    "Series, LabelMatchers, LabelValuesByName, GroupBy, GroupBySlice)"
                )
            value = value[part]
        out.append(_go_print(value))
        pos = action.end()
        if action.group(3):
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(template[pos:])
    return "".join(out)


def _probe_args() -> dict[str, Any]:
    return {
        "Series": "s",
        "LabelMatchers": 'pod="p"',
        "LabelValuesByName": {"pod": "p", "namespace": "n"},
        "GroupBy": "pod",
        "GroupBySlice": ["pod"],
    }


def go_quote(value: str) -> str:
    """Go's %q for a string: double quotes, backslash escapes (what PromQL label values accept)."""
    escapes = {
        "\\": "\\\\",
        '"': '\\"',
        "\n": "\\n",
        "\t": "\\t",
        "\r": "\\r",
        "\a": "\\a",
        "\b": "\\b",
        "\f": "\\f",
        "\v": "\\v",
    }
    out = []
    for ch in value:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) > 0xFF else f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def pods_query(
    rule: AdapterRule, series: str, namespace: str, pods: Sequence[str], selector: Mapping[str, str] | None = None
) -> str:
    """The PromQL the adapter sends for `series` on `pods` in `namespace` (HPA `Pods` metric).

    `selector` is the HPA metric's `selector.matchLabels`; its matchers come first, sorted by
    label as Kubernetes sorts selector requirements.
    """
    if not pods:
        raise AdapterError("the adapter needs at least one pod to build a query")
    matchers = [f"{label}={go_quote(value)}" for label, value in sorted((selector or {}).items())]
    values_by_name = dict(sorted((selector or {}).items()))
    namespace_label = rule.label_for("namespace")
    matchers.append(f"{namespace_label}={go_quote(namespace)}")
    values_by_name[namespace_label] = namespace
    pod_label = rule.label_for("pod")
    joined = "|".join(pods)
    matchers.append(f"{pod_label}={go_quote(joined)}" if len(pods) == 1 else f"{pod_label}=~{go_quote(joined)}")
    values_by_name[pod_label] = joined
    args = {
        "Series": series,
        "LabelMatchers": ",".join(matchers),
        "LabelValuesByName": values_by_name,
        "GroupBy": pod_label,
        "GroupBySlice": [pod_label],
    }
    query = render_template(rule.metrics_query, args)
    if not query:
        raise AdapterError(f"adapter rule {rule.series_query!r} produced an empty query")
    return query


def served_value(value: float) -> float:
    """The value the adapter serves for a query result: milli-units truncated, NaN as 0.

    Go converts `value*1000` to int64; on amd64 an out-of-range value (±Inf) becomes the
    minimum int64. Reproduced so the lab shows what the HPA would really read.
    """
    if math.isnan(value):
        return 0.0
    scaled = value * 1000.0
    if math.isinf(scaled) or abs(scaled) >= 2**63:
        return -(2**63) / 1000.0
    return int(scaled) / 1000.0


class SeriesSource(Protocol):
    """What the adapter needs from Prometheus (llmprep.lab.prometheus.PrometheusServer provides it)."""

    def series(self, match: str) -> list[dict[str, str]]: ...

    def query(self, expr: str) -> Any: ...


@dataclass(frozen=True)
class ResolvedMetric:
    """A custom metric the HPA names, resolved to its rule and Prometheus series."""

    metric: str
    rule: AdapterRule
    series: str


def discover(rules: Iterable[AdapterRule], prometheus: SeriesSource) -> dict[str, ResolvedMetric]:
    """Every pod metric the adapter would list: API name -> rule and series (its relist step)."""
    found: dict[str, ResolvedMetric] = {}
    for rule in rules:
        pod_label, namespace_label = rule.label_for("pod"), rule.label_for("namespace")
        for labels in prometheus.series(rule.series_query):
            name = labels.get("__name__", "")
            if pod_label not in labels or namespace_label not in labels:
                continue
            api = rule.api_name(name)
            if api is not None and api not in found:
                found[api] = ResolvedMetric(api, rule, name)
    return found


def pod_metric_values(
    rules: Iterable[AdapterRule],
    prometheus: SeriesSource,
    metric: str,
    namespace: str,
    pods: Sequence[str],
    selector: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """The values the adapter would serve the HPA for `metric` on `pods`: pod -> value.

    Pods without a series are absent, as in the adapter's reply; no series at all raises,
    as the adapter answers "no metrics returned" and the HPA stops scaling on it.
    """
    resolved = discover(rules, prometheus).get(metric)
    if resolved is None:
        raise AdapterError(f"no adapter rule exposes a pod metric named {metric!r} (is the series recorded yet?)")
    query = pods_query(resolved.rule, resolved.series, namespace, pods, selector)
    pod_label = resolved.rule.label_for("pod")
    values: dict[str, float] = {}
    for sample in prometheus.query(query):
        pod = sample.labels.get(pod_label)
        if pod in pods:
            values[pod] = served_value(sample.value)
    if not values:
        raise AdapterError(f"no metrics returned for {metric} on pods {', '.join(pods)} in {namespace}: {query}")
    return values
