"""The Helm chart as a library: merge values as `helm install` does, render and lint through Helm's SDK.

`merge_values` reproduces Helm's composition of user values: `--values` files deep-merged in
order (maps merge, everything else replaces), then every `--set` applied onto that result with
Helm's strvals rules, so `--set gpu[0]=X` replaces only the first element of a list a file set
(one difference, where Helm fails: a file's null under a `--set` path reads as absent, `apply_sets`).
Helm's own parser (`helm_python.parse_set_string`) checks each expression first; the walk onto
the existing values, Helm's `strvals.ParseInto`, which the SDK does not expose, is in
`llmprep.strvals`. `render` returns the Kubernetes objects Helm would send to the cluster;
`llmprep.gpu_fit` judges their GPUs against the chart's node table for `chart lint`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from llmprep import files as userfiles
from llmprep import strvals
from llmprep.chart_errors import (  # noqa: F401  (the face)
    _secret_field,  # noqa: F401  (tests read it here)
    first_line,
    one_line,
    render_message,
    schema_message,
)
from llmprep.errors import SpecError, UsageError
from llmprep.shipped import shipped
from llmprep.spec.values import deep_merge  # not the face: spec.reading imports this module

# The installed package's copy of the chart, else the checkout's chart/ (see llmprep.shipped).
CHART_DIR = shipped("chart")
# A cluster with the Prometheus operator: what the lab and our documented set-up have.
DEFAULT_API_VERSIONS: tuple[str, ...] = ("monitoring.coreos.com/v1",)


def _helm() -> Any:
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise UsageError("the Helm SDK is missing: pip install 'helm-python-sdk==0.2.2'") from exc
    return helm_python


# --------------------------------------------------------------------------- values


def merge_values(files: Iterable[Path] = (), sets: Iterable[str] = ()) -> dict[str, Any]:
    """The user-supplied values of `helm install -f F1 -f F2 --set S1 --set S2`, composed as Helm does.

    The chart's own defaults are not included: Helm coalesces them at render time (see `render`).
    """
    helm = _helm()
    base: dict[str, Any] = {}
    for path in files:
        path = Path(path)
        text = userfiles.read_text(path, "--values")
        # Bounded depth and alias expansion, finite numbers, one-line errors; Helm then parses it.
        userfiles.load_yaml(text, f"--values {path}", SpecError, string_keys=False)
        try:
            doc = helm.values_from_yaml(text)
        except helm.HelmError as exc:
            raise SpecError(f"--values {path}: not a valid values file ({first_line(exc)})") from None
        base = deep_merge(base, doc or {})
    return apply_sets(base, sets)


def apply_sets(values: Mapping[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """Every `--set` applied in order, as Helm applies them, onto `values` that values files set.

    One difference from Helm, where Helm fails: a null the files left in a key that a `--set` walks
    into (`_open_nulls`) reads as the absent key it stands for. A null set by an earlier `--set`
    is Helm's as it is.
    """
    helm = _helm()
    expressions = list(sets)
    data = copy.deepcopy(dict(values))
    for expression in expressions:
        try:
            walk = helm.parse_set_string(expression)
        except helm.HelmError as exc:
            raise UsageError(f"--set {expression!r}: {first_line(exc)}") from None
        _open_nulls(data, walk)
    for expression in expressions:
        data = apply_set(data, expression)
    return data


def _without_nulls(values: Mapping[str, Any], defaults: Any) -> dict[str, Any]:
    """`values` with every null-valued key removed, at any depth of maps.

    Helm reads a user-supplied null as "remove this key": its coalesce step deletes a key the chart's
    defaults have (kept here for Helm to do so), but a null for a key without a default reached the
    schema and failed. Those are dropped here; the tutorials' values.yaml leaves `autoscaling.metric.name:` and `value:`
    empty in that sense. A later file's null still overrides an earlier file's value, because the
    files are merged first and the nulls dropped last.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        default = defaults.get(key) if isinstance(defaults, Mapping) else None
        if value is None and not (isinstance(defaults, Mapping) and key in defaults):
            continue  # nothing to delete: Helm would pass the null on to the schema
        out[key] = _without_nulls(value, default) if isinstance(value, Mapping) else value
    return out


def apply_set(values: Mapping[str, Any], expression: str) -> dict[str, Any]:
    """`values` with one `--set` expression applied as Helm applies it (a new dict; `values` is untouched)."""
    helm = _helm()
    try:
        helm.parse_set_string(expression)  # Helm's own verdict on the syntax
    except helm.HelmError as exc:
        raise UsageError(f"--set {expression!r}: {first_line(exc)}") from None
    data = copy.deepcopy(dict(values))
    try:
        strvals.parse_into(data, expression)
    except strvals.SetConflict as exc:
        raise UsageError(f"--set {expression!r}: {exc}") from None
    return data


def _open_nulls(data: dict[str, Any], walk: Mapping[str, Any]) -> None:
    """Drop, in place, each null the values files left in `data` that a `--set` walks into as a map or a list.

    `walk` is the expression parsed alone (Helm's own parser): the keys it names and the maps and
    lists it builds under them. Helm's `strvals.ParseInto` (v4.2.3, pkg/strvals/parser.go `key`)
    asserts that an existing key it walks into is a map (`a.b=…`) or a list (`a[0]=…`), and a
    null from a values file fails that assertion: `unable to parse key: interface conversion:
    interface {} is nil, not []interface {}`. The tutorials' `chart/values.yaml` leaves
    `kubernetes.labels:` empty, so their multi-SKU command (`--values ./chart/values.yaml … --set
    'kubernetes.labels[0].model=llama-3-8b'`) failed that way under Helm too. Here the null reads
    as the absent key it stands for, so the `--set` builds the map or list as it would on a key no
    file set. Nothing Helm accepts changes: only the walk Helm refuses does. A null the `--set`
    does not walk into stays (it still removes a chart default at render time). `apply_set` alone
    stays Helm's: `apply_sets` calls this for the files' values before any `--set` applies.
    """
    for key, inner in walk.items():
        if not isinstance(inner, (Mapping, list)) or key not in data:
            continue
        current = data[key]
        if current is None:
            del data[key]
        elif isinstance(inner, Mapping) and isinstance(current, dict):
            _open_nulls(current, inner)
        elif isinstance(inner, list) and isinstance(current, list):
            for mine, theirs in zip(current, inner, strict=False):
                if isinstance(mine, dict) and isinstance(theirs, Mapping):
                    _open_nulls(mine, theirs)


# --------------------------------------------------------------------------- render and lint


def _with_api_versions(values: Mapping[str, Any], api_versions: Iterable[str] | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(values))
    if api_versions is None:
        return out
    monitoring = out.get("monitoring")
    monitoring = dict(monitoring) if isinstance(monitoring, Mapping) else {}
    given = monitoring.get("apiVersions")
    merged = list(given) if isinstance(given, list) else []
    merged += [v for v in api_versions if v not in merged]
    monitoring["apiVersions"] = merged
    out["monitoring"] = monitoring
    return out


def render_files(
    values: Mapping[str, Any],
    *,
    release: str = "llmprep",
    namespace: str = "default",
    chart_dir: Path | None = None,
    api_versions: Iterable[str] | None = DEFAULT_API_VERSIONS,
) -> dict[str, str]:
    """Helm's rendered text per template path, NOTES.txt included (empty templates dropped)."""
    helm = _helm()
    chart_path = Path(chart_dir or CHART_DIR)
    try:
        helm.validate_release_name(release)
    except helm.HelmError as exc:
        raise UsageError(f"release name {release!r}: {first_line(exc)}") from None
    try:
        with helm.Chart.load(chart_path) as chart:
            rendered = chart.render(
                _for_helm(values, chart.values, api_versions), name=release, namespace=namespace, is_install=True
            )
    except helm.HelmValuesError as exc:
        raise SpecError(one_line(str(exc))) from None
    except helm.HelmRenderError as exc:
        raise SpecError(one_line(str(exc))) from None
    except helm.HelmChartLoadError as exc:
        raise UsageError(f"{chart_path}: not a loadable chart ({first_line(exc)})") from None
    return {path: text for path, text in rendered.items() if text.strip()}


def _for_helm(values: Mapping[str, Any], defaults: Any, api_versions: Iterable[str] | None) -> dict[str, Any]:
    """The user values as `render` and `lint` hand them to Helm: nulls without a chart default
    dropped (`_without_nulls`), the cluster's API versions added (`_with_api_versions`)."""
    return _with_api_versions(_without_nulls(values, defaults), api_versions)


def _chart_defaults(chart_path: Path) -> dict[str, Any]:
    helm = _helm()
    try:
        with helm.Chart.load(chart_path) as chart:
            return dict(chart.values or {})
    except helm.HelmChartLoadError as exc:
        raise UsageError(f"{chart_path}: not a loadable chart ({first_line(exc)})") from None


def render(
    values: Mapping[str, Any],
    *,
    release: str = "llmprep",
    namespace: str = "default",
    chart_dir: Path | None = None,
    api_versions: Iterable[str] | None = DEFAULT_API_VERSIONS,
) -> list[dict[str, Any]]:
    """The Kubernetes objects the chart renders for these user values (NOTES.txt and empty documents left out).

    `api_versions` plays the part of `helm install`'s cluster capabilities for the chart's `auto`
    switches (the SDK's offline render has none): the default is a cluster with the Prometheus
    operator; pass `()` for a bare cluster. Objects come in template-path order, then document order;
    the `helm test` Pod (annotation `helm.sh/hook: test`) is among them, as in `helm template`.
    """
    files = render_files(values, release=release, namespace=namespace, chart_dir=chart_dir, api_versions=api_versions)
    objects: list[dict[str, Any]] = []
    for path in sorted(files):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(files[path]):
            if doc:
                objects.append(doc)
    return objects


def notes(
    values: Mapping[str, Any],
    *,
    release: str = "llmprep",
    namespace: str = "default",
    chart_dir: Path | None = None,
    api_versions: Iterable[str] | None = DEFAULT_API_VERSIONS,
) -> str:
    """The NOTES.txt text `helm install` would print."""
    files = render_files(values, release=release, namespace=namespace, chart_dir=chart_dir, api_versions=api_versions)
    return next((text for path, text in files.items() if path.endswith("NOTES.txt")), "")


def lint(
    values: Mapping[str, Any],
    *,
    chart_dir: Path | None = None,
    namespace: str = "default",
    strict: bool = True,
    kube_version: str | None = None,
    api_versions: Iterable[str] | None = DEFAULT_API_VERSIONS,
) -> list[str]:
    """`helm lint --strict` findings of warning severity or worse, as one `path: message` line each (empty: clean).

    The values reach Helm as in `render` (`_for_helm`: a null without a chart default dropped, as
    the tutorials' values.yaml needs), and each finding is one line as `render`'s errors are
    (`one_line`: one `key: allowed (got …)` per bad key). Helm reports a schema failure once per
    rule that meets it (the values file, the templates, the error list): each text is kept once.
    """
    helm = _helm()
    chart_path = Path(chart_dir or CHART_DIR)
    report = helm.lint(
        str(chart_path),
        _for_helm(values, _chart_defaults(chart_path), api_versions),
        strict=strict,
        namespace=namespace,
        kube_version=kube_version,
    )
    found: list[tuple[str, str]] = [
        (str(m.get("path", "")), str(m.get("error", "")))
        for m in report.get("messages", [])
        if m.get("severity", 0) >= 2
    ]
    found += [("", str(e)) for e in report.get("errors") or []]
    lines: list[str] = []
    said: set[frozenset[str]] = set()
    for path, text in found:
        message = one_line(text)
        parts = frozenset(message.split("; "))  # the same keys, whichever order the rule met them in
        if parts in said:
            continue
        said.add(parts)
        lines.append(f"{path}: {message}" if path else message)
    return lines


def find(objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The rendered objects of one kind (and name, when given)."""
    return [
        dict(o)
        for o in objects
        if o.get("kind") == kind and (name is None or o.get("metadata", {}).get("name") == name)
    ]


def rule_groups(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rule groups of every rendered PrometheusRule, as a Prometheus rules file's `groups`."""
    groups: list[dict[str, Any]] = []
    for rule in find(objects, "PrometheusRule"):
        groups.extend(rule.get("spec", {}).get("groups", []))
    return groups


def template(
    files: Iterable[Path] = (),
    sets: Iterable[str] = (),
    *,
    release: str = "llmprep",
    namespace: str = "default",
    chart_dir: Path | None = None,
    api_versions: Iterable[str] | None = DEFAULT_API_VERSIONS,
) -> str:
    """`helm template RELEASE chart -f … --set …` without a Helm binary: the manifests as one YAML stream."""
    objects = render(
        merge_values(files, sets), release=release, namespace=namespace, chart_dir=chart_dir, api_versions=api_versions
    )
    return yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True)
