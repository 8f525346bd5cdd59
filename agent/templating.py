"""The Go-template subset accepted in secret labels, annotations and cluster names.

Supported actions, as documented for tbot's Argo CD output:

* ``{{.ClusterName}}`` - the Teleport cluster name;
* ``{{.KubeName}}`` - the Kubernetes cluster name;
* ``{{ index .Labels "key" }}`` - a label of the Kubernetes cluster (missing key: empty).

Whitespace inside the braces and Go's ``{{-``/``-}}`` trim markers are honoured, and the key
may be a double-quoted (with Go escapes) or back-quoted string. Anything else is rejected
when the configuration is loaded, so a typo never reaches a cluster secret.

Purely computational, no side-effects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Template", "TemplateContext", "TemplateError"]


class TemplateError(ValueError):
    """A template uses syntax outside the supported subset."""


@dataclass(frozen=True)
class TemplateContext:
    """What a template can refer to for one Kubernetes cluster."""

    cluster_name: str
    kube_name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class _Field:
    name: str  # "ClusterName" or "KubeName"


@dataclass(frozen=True)
class _Label:
    key: str


_Part = str | _Field | _Label

# A quoted key may hold "{{" or "}}" (Go's lexer reads a string as one token), so an action
# runs to the first "}}" outside a string.
_QUOTED = r'"(?:[^"\\]|\\.)*"|`[^`]*`'
_ACTION = re.compile(rf"\{{\{{(-\s)?((?:{_QUOTED}|(?!\}}\}})[^\"`])*?)(\s-)?\}}\}}", re.DOTALL)
_FIELD = re.compile(r"\.(ClusterName|KubeName)")
_INDEX = re.compile(rf"index\s+\.Labels\s+({_QUOTED})")
_HELP = 'use {{.ClusterName}}, {{.KubeName}} or {{ index .Labels "key" }}'


def _parse_key(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    try:
        value = json.loads(literal)  # Go and JSON agree on the common escapes
    except json.JSONDecodeError as exc:
        raise TemplateError(f"invalid string {literal} in template") from exc
    if not isinstance(value, str):  # pragma: no cover - a quoted literal is always a string
        raise TemplateError(f"invalid string {literal} in template")
    return value


class Template:
    """A parsed template; ``render`` is total (it never fails)."""

    __slots__ = ("_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._parts = self._parse(source)

    @staticmethod
    def _parse(source: str) -> tuple[_Part, ...]:
        parts: list[_Part] = []
        pos = 0
        for match in _ACTION.finditer(source):
            text = source[pos : match.start()]
            if match.group(1):
                text = text.rstrip()
            if parts and isinstance(parts[-1], str) and parts[-1] == "\0trim":
                parts.pop()
                text = text.lstrip()
            if text:
                parts.append(text)
            action = match.group(2).strip()
            if "{{" in re.sub(_QUOTED, "", action):
                raise TemplateError(f"unterminated action in template {source!r}")
            if m := _FIELD.fullmatch(action):
                parts.append(_Field(m.group(1)))
            elif m := _INDEX.fullmatch(action):
                parts.append(_Label(_parse_key(m.group(1))))
            else:
                raise TemplateError(f"unsupported action {{{{{action}}}}} in template: {_HELP}")
            if match.group(3):
                parts.append("\0trim")
            pos = match.end()
        rest = source[pos:]
        if parts and parts[-1] == "\0trim":
            parts.pop()
            rest = rest.lstrip()
        if "{{" in rest or "}}" in rest:
            raise TemplateError(f"unbalanced '{{{{' or '}}}}' in template {source!r}: {_HELP}")
        if rest:
            parts.append(rest)
        return tuple(parts)

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self._parts)

    def render(self, ctx: TemplateContext) -> str:
        out: list[str] = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, _Field):
                out.append(ctx.cluster_name if part.name == "ClusterName" else ctx.kube_name)
            else:
                out.append(ctx.labels.get(part.key, ""))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)
