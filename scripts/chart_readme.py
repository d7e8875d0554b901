#!/usr/bin/env python3
"""Write chart/README.md: chart/README.md.gotmpl with the values table generated from chart/values.yaml.

values.yaml documents each key with a helm-docs comment right above it: `# -- text` (continued
on following `#` lines); a leading `(type)` overrides the inferred type. A key that is documented
on purpose without being set in values.yaml uses helm-docs' explicit form `# path.to.key -- text`.
A documented map covers its whole subtree. `--check` fails when chart/README.md is out of date or a
key has no documentation (CI runs it through tests/chart/test_readme.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
MARKER = "@@VALUES_TABLE@@"

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")
_DOC = re.compile(r"^ *# -- ?(?P<text>.*)$")
_EXPLICIT = re.compile(r"^ *# (?P<path>[A-Za-z0-9_.]+) -- ?(?P<text>.*)$")
_MORE = re.compile(r"^ *# ?(?P<text>.*)$")
_TYPE = re.compile(r"^\((?P<type>[^)]+)\)\s*")


@dataclass
class Row:
    key: str
    type: str
    default: Any
    description: str


def _lookup(values: Any, path: str) -> tuple[bool, Any]:
    node = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return "object"


def parse(values_file: Path) -> tuple[list[Row], list[str]]:
    """The documented rows in file order, and the keys (leaves) nobody documented."""
    text = values_file.read_text()
    values = yaml.safe_load(text) or {}
    rows: list[Row] = []
    covered: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    pending: list[str] | None = None
    explicit: tuple[str, list[str]] | None = None

    def flush_explicit() -> None:
        nonlocal explicit
        if explicit:
            path, lines = explicit
            rows.append(_row(path, lines, values, present=False))
            covered.append(path)
            explicit = None

    for line in text.splitlines():
        if m := _DOC.match(line):
            flush_explicit()
            pending = [m.group("text")]
            continue
        if m := _EXPLICIT.match(line):
            flush_explicit()
            explicit, pending = (m.group("path"), [m.group("text")]), None
            continue
        if line.lstrip().startswith("#"):
            more = _MORE.match(line)
            if explicit and more:
                explicit[1].append(more.group("text"))
            elif pending is not None and more:
                pending.append(more.group("text"))
            continue
        flush_explicit()
        m = _KEY.match(line)
        if not m:
            continue  # list items, blank lines
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [m.group("key")])
        stack.append((indent, m.group("key")))
        if pending is not None:
            rows.append(_row(path, pending, values, present=True))
            covered.append(path)
            pending = None
    flush_explicit()
    undocumented = [leaf for leaf in _leaves(values) if not any(leaf == c or leaf.startswith(c + ".") for c in covered)]
    return rows, undocumented


def _row(path: str, lines: list[str], values: Any, *, present: bool) -> Row:
    description = " ".join(line.strip() for line in lines).strip()
    found, default = _lookup(values, path)
    kind = _type_of(default) if found else "unset"
    if m := _TYPE.match(description):
        kind, description = m.group("type"), description[m.end() :]
    return Row(path, kind, default if present else None, description)


def _leaves(values: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _leaves(value, path + ".")
        else:
            out.append(path)
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "unset"
    return "`" + json.dumps(value, separators=(",", ":")).replace("|", "\\|") + "`"


def table(rows: list[Row]) -> str:
    lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for row in rows:
        description = row.description.replace("|", "\\|")
        lines.append(f"| `{row.key}` | {row.type} | {_cell(row.default)} | {description} |")
    return "\n".join(lines)


def readme(chart_dir: Path = CHART) -> str:
    rows, undocumented = parse(chart_dir / "values.yaml")
    if undocumented:
        raise SystemExit(f"chart/values.yaml: keys without a '# --' comment: {', '.join(undocumented)}")
    template = (chart_dir / "README.md.gotmpl").read_text()
    return template.replace(MARKER, table(rows))


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if chart/README.md is not up to date")
    args = parser.parse_args(argv)
    text = readme()
    target = CHART / "README.md"
    if args.check:
        if not target.exists() or target.read_text() != text:
            print("chart/README.md is out of date: run python scripts/chart_readme.py", file=sys.stderr)
            return 1
        return 0
    _write_atomic(target, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
