"""Kubernetes naming rules, checked in exactly one place.

The rules mirror apimachinery's validators (``IsDNS1123Subdomain``, ``IsDNS1123Label``,
``IsQualifiedName``, ``IsValidLabelValue``). Each function returns a list of problems in
plain words; an empty list means valid. Purely computational, no side-effects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "dns_label_problems",
    "dns_subdomain_problems",
    "label_key_problems",
    "label_value_problems",
]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63


@dataclass(frozen=True)
class _Rule:
    """A name rule: a length limit and a pattern, with the pattern said in words."""

    limit: int
    pattern: re.Pattern[str]
    words: str

    def problems(self, value: str) -> list[str]:
        problems = []
        if len(value) > self.limit:
            problems.append(f"must be no more than {self.limit} characters")
        if not self.pattern.fullmatch(value):
            problems.append(self.words)
        return problems


_DNS_LABEL_RULE = _Rule(
    DNS_LABEL_MAX,
    _DNS_LABEL,
    "must consist of lowercase letters, digits and '-', and start and end with a letter or digit",
)
_DNS_SUBDOMAIN_RULE = _Rule(
    DNS_SUBDOMAIN_MAX,
    _DNS_SUBDOMAIN,
    "must consist of lowercase letters, digits, '-' and '.', and each '.'-separated part must "
    "start and end with a letter or digit",
)
_LABEL_VALUE_RULE = _Rule(
    LABEL_VALUE_MAX,
    _LABEL_VALUE,
    "must consist of letters, digits, '-', '_' or '.', and start and end with a letter or digit",
)


def dns_label_problems(value: str) -> list[str]:
    """Problems with ``value`` as a DNS-1123 label (e.g. a namespace name)."""
    return _DNS_LABEL_RULE.problems(value)


def dns_subdomain_problems(value: str) -> list[str]:
    """Problems with ``value`` as a DNS-1123 subdomain (e.g. a Secret name)."""
    return _DNS_SUBDOMAIN_RULE.problems(value)


def label_key_problems(key: str) -> list[str]:
    """Problems with ``key`` as a label or annotation key (``[prefix/]name``)."""
    prefix, _, name = key.rpartition("/")
    problems = []
    if "/" in prefix:
        return ["may contain at most one '/'"]
    if key.endswith("/") or key.startswith("/"):
        return ["must be '[prefix/]name' with a non-empty prefix and name"]
    if prefix:
        problems += [f"prefix {p}" for p in dns_subdomain_problems(prefix)]
    if len(name) > DNS_LABEL_MAX:
        problems.append(f"name part must be no more than {DNS_LABEL_MAX} characters")
    if not _QUALIFIED_NAME.fullmatch(name):
        problems.append(
            "name part must consist of letters, digits, '-', '_' or '.', and start and end "
            "with a letter or digit"
        )
    return problems


def label_value_problems(value: str) -> list[str]:
    """Problems with ``value`` as a label value (may be empty)."""
    return _LABEL_VALUE_RULE.problems(value)
