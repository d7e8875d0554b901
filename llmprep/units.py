"""Ground module: Kubernetes quantities and durations, read once for every caller.

`parse_quantity` follows apimachinery's `resource.Quantity` grammar (a signed decimal, then a
binary suffix Ki…Ei, a decimal suffix n u m k M G T P E, or an exponent e3/E-2) and computes in
Decimal, so `1500m` is exactly 1.5. `parse_duration` reads the seconds our files write
(`90`, `90s`, `1.5m`, `250ms`, `2h`, `forever`).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from llmprep.errors import UsageError

FOREVER = math.inf

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?\d+))?$"
)
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class QuantityError(UsageError, ValueError):
    """A value that is not a Kubernetes quantity (a ValueError too, for callers that catch that)."""


def parse_quantity(value: Any, field: str = "quantity") -> float:
    """A Kubernetes quantity (`1500m`, `2`, `0.5`, `4Ki`, `1e3`, `250u`) or a YAML number, as a float."""
    if isinstance(value, bool):
        raise QuantityError(f"{field}: expected a Kubernetes quantity such as 1500m, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity (e.g. 1500m, 2, 0.5)")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise QuantityError(f"{field}: {value!r} is not a Kubernetes quantity") from None
    if match["exponent"] is not None:
        return float(number.scaleb(int(match["exponent"])))
    return float(number * _SUFFIX[match["suffix"] or ""])


def parse_duration(value: Any, field: str) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `250ms`, `2h` or `forever` (math.inf); UsageError naming `field`."""
    if isinstance(value, bool):
        raise UsageError(f"{field}: expected a duration like 60s, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip().lower() in ("forever", "inf"):
        return FOREVER
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _SCALE[match.group(2)]
    else:
        raise UsageError(f"{field}: expected a duration like 60s, 2m or forever, got {value!r}")
    if seconds < 0 or math.isnan(seconds):
        raise UsageError(f"{field}: a duration cannot be negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A Prometheus/Go duration: 1.0 -> '1s', 0.5 -> '500ms', 90 -> '90s'; ValueError if not positive."""
    if seconds <= 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be a positive number of seconds, got {seconds!r}")
    millis = round(seconds * 1000)
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"
