"""`kustomize build` for the few fields clients/ uses, so its overlays render without a kustomize binary.

CI installs no kustomize (`make setup` does not) and kubectl, which embeds one, is not a Python
package. This applies exactly the fields clients/ uses and refuses any other, so a new field in
an overlay fails the tests instead of rendering wrong:
- `resources`: files (every YAML document) and directories (built recursively);
- `patches` with an inline JSON 6902 `patch` (ops `test` and `replace`) and a `target` of kind
  and name, applied before the name suffix (kustomize matches a target by the name it had);
- `nameSuffix`; `labels` (`pairs`, `includeSelectors`, `includeTemplates`) on a Deployment's
  metadata, selector and pod template; `images` (`name`, `newName`, `newTag`, `digest`).
Where kubectl is on PATH, tests/load/test_containers_and_clients.py renders every overlay with
`kubectl kustomize` too and asserts the same objects, field for field.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import yaml

FIELDS = {"apiVersion", "kind", "resources", "patches", "nameSuffix", "labels", "images"}


class KustomizeError(Exception):
    """An overlay this double cannot build: an unknown field, a failed `test` op, a bad path."""


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kustomize build directory` emits (in resource order)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text()) or {}
    unknown = set(kustomization) - FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: fields {sorted(unknown)} are not emulated (tests/doubles/kustomize.py)")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(build(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for patch in kustomization.get("patches", []):
        targets = [o for o in objects if _matches(o, patch.get("target") or {})]
        if not targets:
            raise KustomizeError(f"{directory}: patch target {patch.get('target')} matches no object")
        for obj in targets:
            for op in yaml.safe_load(patch["patch"]):
                apply_op(obj, op)
    for obj in objects:
        obj["metadata"]["name"] += kustomization.get("nameSuffix", "")
    for labels in kustomization.get("labels", []):
        for obj in objects:
            _label(obj, labels)
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in _containers(obj):
                container["image"] = _image(container["image"], image)
    return objects


def _matches(obj: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    return all(obj.get(k) == v if k == "kind" else obj["metadata"].get(k) == v for k, v in target.items())


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"patch path {path!r}: must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_op(obj: MutableMapping[str, Any], op: Mapping[str, Any]) -> None:
    """One JSON 6902 operation (`test` or `replace`) on `obj`, in place."""
    *parents, last = _pointer(op["path"])
    node: Any = obj
    try:
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        current = node[key]
    except (KeyError, IndexError, ValueError, TypeError):
        raise KustomizeError(f"patch path {op['path']}: not in the object") from None
    if op["op"] == "test":
        if current != op["value"]:
            raise KustomizeError(f"patch test {op['path']}: is {current!r}, not {op['value']!r}")
    elif op["op"] == "replace":
        node[key] = copy.deepcopy(op["value"])
    else:
        raise KustomizeError(f"patch op {op['op']!r}: only test and replace are emulated")


def _label(obj: dict[str, Any], labels: Mapping[str, Any]) -> None:
    pairs = dict(labels["pairs"])
    obj["metadata"].setdefault("labels", {}).update(pairs)
    if obj.get("kind") != "Deployment":
        return
    spec = obj["spec"]
    if labels.get("includeSelectors"):
        spec["selector"].setdefault("matchLabels", {}).update(pairs)
    if labels.get("includeSelectors") or labels.get("includeTemplates"):
        spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def _containers(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _image(reference: str, image: Mapping[str, str]) -> str:
    """kustomize's ImageTagTransformer on one reference: `name[:tag][@digest]`, matched by name."""
    name = reference.partition("@")[0]
    tag = ""
    if ":" in name.rpartition("/")[2]:
        name, _, tag = name.rpartition(":")
    if name != image["name"]:
        return reference
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    tag = image.get("newTag", tag)
    return f"{name}:{tag}" if tag else name
