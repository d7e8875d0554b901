"""Helm's `--set` grammar walked onto values that files already set (Helm's `strvals.ParseInto`).

Helm's own parser (`helm_python.parse_set_string`) judges the syntax, but the SDK does not expose
the walk onto existing values, so `--set gpu[0]=X` over a file's `gpu: [A, B]` replacing only the
first element is reproduced here from Helm's pkg/strvals/parser.go: keys, `[index]`, `{a,b}`
lists, backslash escapes and its typing of scalars (`true`, `null`, integers without a leading
zero). Pure Python, no SDK: `llmprep.chart.apply_set` checks the syntax first, then calls
`parse_into`.
"""

from __future__ import annotations

import re
from typing import Any

# Limits of Helm's strvals parser.
_MAX_INDEX = 65536
_MAX_NESTED_NAME_LEVEL = 30
_INT = re.compile(r"[+-]?[0-9]+")


def parse_into(data: dict[str, Any], expression: str) -> None:
    """Apply one `--set` expression onto `data` in place; `SetConflict` when it cannot apply."""
    _SetParser(expression).parse_into(data)


class SetConflict(Exception):
    """The expression is valid alone but cannot apply onto the values the files set."""


class _Eof:
    """End of the expression: Helm's parser stops there without an error."""


_EOF = _Eof()


class _SetParser:
    """A walk of Helm's strvals grammar onto existing values (Helm's `ParseInto`)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _read(self) -> str | None:
        if self.pos >= len(self.text):
            return None
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def _unread(self) -> None:
        self.pos -= 1

    def _until(self, stop: str) -> tuple[str, str | None]:
        """Characters up to one of `stop` (consumed), honouring backslash escapes; None at the end."""
        out: list[str] = []
        while True:
            ch = self._read()
            if ch is None:
                return "".join(out), None
            if ch in stop:
                return "".join(out), ch
            if ch == "\\":
                nxt = self._read()
                if nxt is None:
                    return "".join(out), None
                out.append(nxt)
            else:
                out.append(ch)

    def parse_into(self, data: dict[str, Any]) -> None:
        while self._key(data, 0, "") is not _EOF:
            pass

    def _key(self, data: dict[str, Any], level: int, prefix: str) -> _Eof | None:
        key, last = self._until("=[,.")
        if last is None:
            if not key:
                return _EOF
            raise SetConflict(f"key {key!r} has no value")
        if last == "[":
            index = self._index()
            current = data.get(key, []) if key in data else []
            if not isinstance(current, list):
                raise SetConflict(
                    f"{prefix}{key} is {_kind(current)} in the values files, so {prefix}{key}[{index}] cannot index it"
                )
            result, end = self._list_item(current, index, level, f"{prefix}{key}[{index}]")
            if key:
                data[key] = result
            return end
        if last == "=":
            value, at_end = self._value()
            if key:
                data[key] = value
            # Helm reports the end of input here when nothing follows `=`; a caller inside a
            # list element then drops that element (`a[0].b=` leaves `a` empty), as Helm does.
            return _EOF if at_end else None
        if last == ",":
            raise SetConflict(f"key {key!r} has no value (cannot end with ,)")
        # last == "."
        level += 1
        if level > _MAX_NESTED_NAME_LEVEL:
            raise SetConflict(f"more than {_MAX_NESTED_NAME_LEVEL} nested names")
        inner: Any = data[key] if key in data else {}
        if not isinstance(inner, dict):
            raise SetConflict(f"{prefix}{key} is {_kind(inner)} in the values files, so no key can be set inside it")
        end = self._key(inner, level, f"{prefix}{key}.")
        if end is None and not inner:
            raise SetConflict(f"key map {key!r} has no value")
        if inner and key:
            data[key] = inner
        return end

    def _index(self) -> int:
        raw, last = self._until("]")
        if last is None or not _INT.fullmatch(raw):
            raise SetConflict(f"error parsing index {raw!r}")
        return int(raw)

    def _list_item(self, items: list[Any], index: int, level: int, path: str) -> tuple[list[Any], _Eof | None]:
        if index < 0:
            raise SetConflict(f"negative {index} index not allowed")
        rest, last = self._until("[.=")
        if rest:
            raise SetConflict(f"unexpected data at end of array index: {rest!r}")
        if last is None:
            return items, _EOF
        if last == "=":
            return _set_index(items, index, self._value()[0]), None
        if last == "[":
            inner_index = self._index()
            current = items[index] if len(items) > index else None
            if current is not None and not isinstance(current, list):
                raise SetConflict(f"{path} is {_kind(current)}, so {path}[{inner_index}] cannot index it")
            nested, end = self._list_item(
                current if current is not None else [], inner_index, level, f"{path}[{inner_index}]"
            )
            if end is not None:
                return items, end
            return _set_index(items, index, nested), None
        # last == "."
        inner: dict[str, Any] = {}
        if len(items) > index:
            if isinstance(items[index], dict):
                inner = items[index]
            else:
                items[index] = inner
        end = self._key(inner, level, f"{path}.")
        if end is not None:
            return items, end
        return _set_index(items, index, inner), None

    def _value(self) -> tuple[Any, bool]:
        """The value after `=` (a `{a,b}` list or one scalar, typed as Helm types them) and whether the input ended at `=`."""
        ch = self._read()
        if ch is None:
            return "", True
        if ch != "{":
            self._unread()
            raw, _ = self._until(",")
            return _typed(raw), False
        out: list[Any] = []
        while True:
            raw, last = self._until(",}")
            if last is None:
                raise SetConflict("list must terminate with '}'")
            out.append(_typed(raw))
            if last == "}":
                nxt = self._read()
                if nxt is not None and nxt != ",":
                    self._unread()
                return out, False


def _set_index(items: list[Any], index: int, value: Any) -> list[Any]:
    if index > _MAX_INDEX:
        raise SetConflict(f"index of {index} is greater than maximum supported index of {_MAX_INDEX}")
    if len(items) <= index:
        items.extend([None] * (index + 1 - len(items)))
    items[index] = value
    return items


def _typed(raw: str) -> Any:
    """Helm's typedVal: true/false/null (any case), integers without a leading zero, else the string."""
    lowered = raw.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if lowered == "null":
        return None
    if raw == "0":
        return 0
    if raw and raw[0] != "0" and _INT.fullmatch(raw):
        number = int(raw)
        if -(2**63) <= number < 2**63:
            return number
    return raw


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"the {type(value).__name__} {value!r}"
