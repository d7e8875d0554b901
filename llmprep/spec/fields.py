"""Reading typed keys out of a values mapping, each error one line naming the key's full path."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from llmprep.errors import SpecError
from llmprep.files import quote, token_not_a_name

_DECIMAL = re.compile(r"^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$")
INT32_MAX = 2**31 - 1  # Kubernetes and TensorRT-LLM integers are int32
# A Secret's name is a DNS-1123 subdomain (Kubernetes: apimachinery validation IsDNS1123Subdomain).
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Length caps on free text (issue 22): a value ends up in a path, a command line or a label, and an
# error must not have to quote megabytes. Each refusal names the field and never echoes the value.
MAX_ID = 200  # model.name, hfRepo, revision: path components under the cache (NAME_MAX is 255 bytes)
MAX_NAME = 253  # a Kubernetes object's name (a PersistentVolumeClaim)
MAX_LABEL = 63  # a Kubernetes label value (gpu: node selection by nvidia.com/gpu.product)
MAX_QUANTITY = 64  # a Kubernetes quantity such as 32Gi
MAX_TEXT = 4096  # any other free text: a tokenizer path (PATH_MAX), a tritonserver or trtllm-build option


class Section:
    """Reads typed keys out of one mapping, naming the full path in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(f"{path}: must be a mapping of keys, got {kind_of(data)}")
        self.data = dict(data)
        self.path = path
        self.seen: set[str] = set()

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def text(
        self, key: str, default: str | None = None, *, choices: Iterable[str] = (), max_length: int = MAX_TEXT
    ) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{self._at(key)}: must be a non-empty string, got {kind_of(value)}")
        check_length(value, self._at(key), max_length)
        allowed = tuple(choices)
        if allowed and value not in allowed:
            raise SpecError(f"{self._at(key)}: {quote(value)} is not one of {', '.join(allowed)}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int = INT32_MAX) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{self._at(key)}: must be an integer ≥ {minimum}, got {kind_of(value)}")
        if value < minimum:
            raise SpecError(f"{self._at(key)}: must be an integer ≥ {minimum}, got {value}")
        if value > maximum:
            raise SpecError(f"{self._at(key)}: must be an integer ≤ {maximum}, got {value}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, str) and _DECIMAL.match(value):
            value = float(value)  # Helm's --set leaves decimals as strings ("0.8")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{self._at(key)}: must be a number, got {kind_of(value)}")
        if not math.isfinite(value):
            raise SpecError(f"{self._at(key)}: must be a finite number, got {value}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"≥ {minimum:g}"
            raise SpecError(f"{self._at(key)}: must be {bound}, got {value}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise SpecError(f"{self._at(key)}: must be true or false, got {kind_of(value)}")
        return value

    def quantity(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SpecError(f"{self._at(key)}: must be a Kubernetes quantity such as 4 or 32Gi")
        check_length(str(value), self._at(key), MAX_QUANTITY)
        return str(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SpecError(f"{self._at(key)}: must be a mapping, got {kind_of(value)}")
        return dict(value)

    def section(self, key: str) -> Section:
        return Section(self._get(key), self._at(key))

    def ignore(self, *keys: str) -> None:
        self.seen.update(keys)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen, key=str)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            raise SpecError(f"{self._at(str(unknown[0]))[:200]}: unknown key; allowed here: {allowed}")


def check_length(value: str, at: str, limit: int) -> None:
    """SpecError naming the field `at` when `value` is over `limit` characters (the value is not shown)."""
    if len(value) > limit:
        raise SpecError(f"{at}: {len(value)} characters, over the {limit} this field may have; give a shorter value")


def check_free_text(value: Any, at: str, limit: int = MAX_TEXT) -> None:
    """Every string in `value` (keys too, through mappings and lists) within `limit` characters."""
    if isinstance(value, str):
        check_length(value, at, limit)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = str(key)
            check_length(name, f"{at} (a key)", limit)
            check_free_text(item, f"{at}.{name}", limit)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_free_text(item, f"{at}[{i}]", limit)


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float)):
        return f"number {quote(value)}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if value is None:
        return "nothing"
    return type(value).__name__


def secret_name(sec: Section, key: str) -> str | None:
    """A field that names a Secret: a DNS subdomain, and never echoed (a pasted token would be printed)."""
    value = sec._get(key)
    if value is None:
        return None
    if token_not_a_name(value):
        raise SpecError(
            f"{sec._at(key)}: this looks like a token, not a Secret's name (value not shown); "
            "store the token in a Secret (kubectl create secret generic NAME --from-literal=password=…) and give NAME"
        )
    if not isinstance(value, str) or len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise SpecError(
            f"{sec._at(key)}: must be a Secret's name (lowercase letters, digits, '-' and '.', at most 253; value not shown)"
        )
    return value
