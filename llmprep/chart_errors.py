"""Helm's values and render failures as one line a user can act on (`llmprep chart template|lint`).

Schema failures name the key and what is allowed; quoted values are cut and never shown where they
look like a token or sit in a field that names a Secret (llmprep/files.py `quote`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmprep import files as userfiles


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# One failure of Helm's schema validator (santhosh-tekuri/jsonschema v6): `- at '/a/0/b': text`, the
# location and every value in the text quoted Go-style in single quotes (`'` written `\'`).
_SCHEMA_LINE = re.compile(r"^\s*(?:- )?at '(?P<path>(?:[^'\\]|\\.)*)': (?P<text>.*)$")
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.S)
_GO_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}
_BOUND = {
    "minimum": "at least {want} (got {got})",
    "maximum": "at most {want} (got {got})",
    "minLength": "at least {want} characters (got {got})",
    "maxLength": "at most {want} characters (got {got})",
}
_BOUND_LINE = re.compile(r"^(?P<kind>minimum|maximum|minLength|maxLength): got (?P<got>\S+), want (?P<want>\S+)$")
# Group headers: the failures under them follow, each on its own line.
_HEADERS = {"'anyOf' failed", "'allOf' failed", "'oneOf' failed", "validation failed"}
MAX_KEY_CHARS = 200  # of a key path an error shows (a --set may name a key megabytes long)
MAX_MESSAGE_CHARS = 2000  # of a whole failure line

# Fields that name a Secret: what a user pasted there may be the secret itself, so no failure on them
# shows the value (chart/values.schema.json types them `$defs/secretName`; tests hold the two together).
_SECRETISH = re.compile(r"secrets?$", re.IGNORECASE)  # pullSecret, pullSecrets, existingSecret, hfTokenSecret
_SECRET_FIX = {
    "pullSecret": "kubectl create secret generic NAME --from-literal=password=<token>",
    "pullSecrets": "kubectl create secret docker-registry NAME --docker-server=… --docker-username=… --docker-password=…",
    "existingSecret": "the commands in chart/README.md, Multi-node",
}


def _go_unquote(text: str) -> str:
    """A Go-quoted string's value (the validator quotes what it shows with `%q`)."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) > 1:
            try:
                return chr(int(code[1:], 16))
            except ValueError:
                return match.group(0)
        return _GO_SIMPLE.get(code, code)

    return _GO_ESCAPE.sub(one, text)


def _secret_field(parts: Sequence[str]) -> str | None:
    """The Secret-naming key (`pullSecret`, `pullSecrets`…) a schema path ends in, or None."""
    named = [p for p in parts if not p.isdigit()]
    if named and _SECRETISH.search(named[-1]):
        return named[-1]
    if len(named) >= 2 and named[-1] == "name" and _SECRETISH.search(named[-2]):
        return named[-2]
    return None


def _key_of(parts: Sequence[str]) -> str:
    key = ""
    for part in parts:
        key += f"[{part}]" if part.isdigit() else (f".{part}" if key else part)
    if len(key) > MAX_KEY_CHARS:
        key = f"{key[: MAX_KEY_CHARS - 1]}… ({len(key)} characters)"
    return key or "values"


def _shown(text: str) -> str:
    """A reason with each value it quotes cut and token-checked (`files.quote`); the pattern it names
    is the schema's own text and stays."""

    def one(match: re.Match[str]) -> str:
        before = text[: match.start()]
        if before.endswith("pattern "):
            return match.group(0)
        return userfiles.quote(_go_unquote(match.group(1)))

    said = _QUOTED.sub(one, text)
    bound = _BOUND_LINE.match(said)
    if bound:
        return _BOUND[bound.group("kind")].format(got=bound.group("got"), want=bound.group("want"))
    return re.sub(r"^got (\S+), want (\S+)$", r"\2 (got \1)", said)


def _secret_reasons(field: str, reasons: Sequence[str]) -> list[str]:
    """The reasons a Secret-naming field failed, none showing the value."""
    values = [_go_unquote(m.group(1)) for r in reasons for m in _QUOTED.finditer(r) if r.startswith(m.group(0))]
    token = "'not' failed" in reasons or any(userfiles.looks_like_token(v) for v in values)
    out: list[str] = []
    if token:
        fix = _SECRET_FIX.get(field, "kubectl create secret generic NAME --from-literal=…")
        out.append(
            "this looks like a token, not a Secret's name (value not shown); "
            f"create a Secret holding it ({fix}) and give the Secret's name"
        )
    elif any(r.endswith("'") and " does not match pattern " in r or _BOUND_LINE.match(r) for r in reasons):
        out.append(
            "must be a Secret's name (lowercase letters, digits, '-' and '.', at most 253 characters; value not shown)"
        )
    for reason in reasons:
        if reason == "'not' failed" or " does not match pattern " in reason or _BOUND_LINE.match(reason):
            continue
        out.append(_shown(reason))  # a wrong type, an unknown key: no value of the field
    return out


def schema_message(text: str) -> str:
    """Helm's values-schema failure as one line per bad key, keys written with dots (`a.b[0]`).

    What a failure quotes of a value is cut and token-checked (`files.quote`), and a field that names
    a Secret never shows its value: the token pasted there is refused without being printed.
    """
    found: dict[tuple[str, ...], list[str]] = {}
    for line in text.splitlines():
        match = _SCHEMA_LINE.match(line)
        if not match:
            continue
        pointer = _go_unquote(match.group("path"))
        parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/") if p)
        said = match.group("text").strip()
        if said in _HEADERS:
            continue  # the failures under it follow, each on its own line
        reasons = found.setdefault(parts, [])
        if said not in reasons:
            reasons.append(said)
    lines: list[str] = []
    for parts, reasons in found.items():
        field = _secret_field(parts)
        shown = _secret_reasons(field, reasons) if field else [_shown(r) for r in reasons]
        lines.append(f"{_key_of(parts)}: {' or '.join(dict.fromkeys(shown))}")
    return _cut("; ".join(lines)) if lines else _cut(first_line(Exception(text)))


# A word of a Helm message that is a token by its prefix (the prefixes `files.looks_like_token` knows):
# hidden wherever it stands. (Its other rule, any 32-character word, would also hide our own words.)
_TOKEN_WORD = re.compile(userfiles.TOKEN_WITH_PREFIX)


def _cut(text: str) -> str:
    """A failure line no longer than MAX_MESSAGE_CHARS, with no token-shaped word in it."""
    if len(text) > MAX_MESSAGE_CHARS:
        text = f"{text[: MAX_MESSAGE_CHARS - 1]}… ({len(text)} characters)"
    return "".join("<not shown>" if _TOKEN_WORD.match(w) else w for w in re.split(r"([^A-Za-z0-9_\-]+)", text))


_FAIL = re.compile(r"(?:error calling fail: |execution error at \([^)]*\): )(?P<text>.*)")


def render_message(text: str) -> str:
    """A template's `fail`/`required` message without Helm's template-position prefix."""
    match = _FAIL.search(text)
    return _cut(match.group("text").strip() if match else first_line(Exception(text)))


def one_line(text: str) -> str:
    """Any Helm values or render failure as one line: a schema failure as `schema_message` gives
    it, a template's `fail`/`required` as `render_message` does, else the first line."""
    if any(_SCHEMA_LINE.match(line) for line in text.splitlines()):
        return schema_message(text)
    return render_message(text)
