"""The agent's configuration: one YAML file, validated before anything is written.

Field names follow tbot's configuration so that a tbot ``kubernetes/argo-cd`` service block
is accepted verbatim; the agent's extras (``discovery_interval``, ``prune``, ``instance``)
are additive. Unknown keys are errors, so a typo never passes silently.

Top-level scalars may be overridden by environment variables with the prefix
``TELEPORT_ARGOCD_AGENT_`` (for example ``TELEPORT_ARGOCD_AGENT_PROXY_SERVER``); the
environment wins over the file.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.labels import is_reserved_annotation, is_reserved_label
from agent.names import dns_label_problems, dns_subdomain_problems, label_key_problems
from agent.templating import Template, TemplateError

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "ENV_PREFIX",
    "AgentConfig",
    "ArgoCDService",
    "ConfigError",
    "Onboarding",
    "Selector",
    "default_rotation_window",
    "format_duration",
    "load_config",
    "max_rotation_window",
    "parse_config",
    "parse_duration",
    "pod_namespace",
]

ENV_PREFIX = "TELEPORT_ARGOCD_AGENT_"
DEFAULT_SECRET_NAME_PREFIX = "teleport.argocd-cluster"
DEFAULT_CLUSTER_NAME_TEMPLATE = "{{.ClusterName}}-{{.KubeName}}"
# A secret name is "<prefix>.<16 hex>"; validating a sample catches a bad prefix up front.
_SAMPLE_NAME_SUFFIX = ".0123456789abcdef"

V = TypeVar("V")


# A service's name when it has none (in logs, metrics, /readyz and the ownership label).
DEFAULT_SERVICE_NAME = "argo-cd"


def pod_namespace() -> str:
    """The namespace the agent runs in ($POD_NAMESPACE, set by the chart), else "default".
    The one place the agent reads it."""
    return os.environ.get("POD_NAMESPACE") or "default"


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending field and the fix."""


# -- durations --------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


# Go's time.Duration is an int64 of nanoseconds: about 2562047 hours (292 years). Beyond that
# (and for infinity or NaN) a timedelta overflows instead of giving a field error.
_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9


def _bounded(seconds: float, value: object) -> timedelta:
    if not math.isfinite(seconds) or abs(seconds) > _MAX_DURATION_SECONDS:
        raise ValueError(
            f"{value!r} is out of range: a duration can be at most 2562047h (about 292 years)"
        )
    return timedelta(seconds=seconds)


def parse_duration(value: object) -> timedelta:
    """Parse a Go-style duration (``1h``, ``20m``, ``1m30s``, ``500ms``) or seconds as a number."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 20m or 1h")
    if isinstance(value, int | float):
        return _bounded(float(value), value)
    if not isinstance(value, str):
        raise ValueError("must be a duration such as 30s, 20m or 1h")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f"{value!r} is not a duration: use a number with a unit, such as 30s, 20m, 1h or 1h30m"
        )
    return _bounded(total, value)


def format_duration(value: timedelta) -> str:
    """Render a duration the way it is written in the config (``1h20m``, ``30s``)."""
    seconds = value.total_seconds()
    if seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return out + (f"{secs}s" if secs or not out else "")


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


def _positive(value: timedelta | None, field: str) -> None:
    if value is not None and value <= timedelta(0):
        raise ValueError(f"{field} must be greater than zero")


def _check_lifetime(ttl: timedelta | None, renewal: timedelta | None, where: str = "") -> None:
    if (ttl is None) != (renewal is None):
        raise ValueError(
            f"set both {where}credential_ttl and {where}renewal_interval, or neither "
            "(one without the other is ambiguous)"
        )
    if ttl is None or renewal is None:
        return
    _positive(ttl, f"{where}credential_ttl")
    _positive(renewal, f"{where}renewal_interval")
    if renewal >= ttl:
        raise ValueError(
            f"{where}renewal_interval ({format_duration(renewal)}) must be shorter than "
            f"{where}credential_ttl ({format_duration(ttl)}), or credentials expire before "
            "they are renewed"
        )


def _refusing(problem: Callable[[V], str | None]) -> AfterValidator:
    """A field's validator from ``problem``, which says what is wrong with a value (None when
    nothing is): every single-field rule below is such a function."""

    def check(value: V) -> V:
        if message := problem(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _joined(problems: list[str]) -> str:
    return "; ".join(problems)


def _namespace_problem(value: str) -> str | None:
    # Empty is no namespace yet: the service's default is filled in from $POD_NAMESPACE.
    problems = dns_label_problems(value) if value else []
    return f"{value!r} is not a valid namespace name: {_joined(problems)}" if problems else None


def _listed_namespace_problem(value: str) -> str | None:
    return "cannot be blank" if not value.strip() else _namespace_problem(value)


def _secret_name_problem(value: str) -> str | None:
    problems = dns_subdomain_problems(value)
    return f"{value!r} is not a valid secret name: {_joined(problems)}" if problems else None


def _name_prefix_problem(value: str) -> str | None:
    if not (problems := dns_subdomain_problems(value + _SAMPLE_NAME_SUFFIX)):
        return None
    return (
        f"{value!r} does not give valid secret names ('{value}{_SAMPLE_NAME_SUFFIX}' "
        f"{_joined(problems)}): use lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit"
    )


def _repeated_namespace(value: list[str]) -> str | None:
    return "lists the same namespace twice" if len(set(value)) != len(value) else None


def _too_frequent(value: timedelta) -> str | None:
    return "discovery_interval must be at least 1s" if value < timedelta(seconds=1) else None


def _address_problem(value: str) -> str | None:
    if not value:
        return None  # reported by AgentConfig._cross_field, with what to set
    host, sep, port = value.rpartition(":") if ":" in value else (value, "", "")
    valid_port = not sep or (port.isdigit() and 0 < int(port) < 65536)
    valid_host = (
        bool(host) and host.strip("[]").replace(".", "").replace("-", "").replace(":", "").isalnum()
    )
    if valid_host and valid_port:
        return None
    return (
        f"{value!r} is not an address: use host:port without a scheme or path, "
        "e.g. teleport.example.com:443"
    )


def _server_prefix_problem(value: str) -> str | None:
    host = value.removeprefix("https://").removesuffix("/v1/teleport/")
    if not value or (
        value.startswith("https://")
        and value.endswith("/v1/teleport/")
        and host
        and "/" not in host
    ):
        return None
    return (
        f"{value!r} must be https://<proxy public address>/v1/teleport/, e.g. "
        "https://teleport.example.com:443/v1/teleport/"
    )


def _listen_address_problem(value: str) -> str | None:
    _, sep, port = value.rpartition(":")
    if not value or (sep and port.isdigit() and 0 < int(port) < 65536):
        return None
    return f"{value!r} must be host:port, e.g. 0.0.0.0:3001"


NamespaceName = Annotated[str, _refusing(_listed_namespace_problem)]


# -- models -----------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Selector(_Strict):
    """Which Teleport Kubernetes clusters a service registers: by name, or by labels."""

    # A cluster name, or the name it was discovered under (the discovered-name label).
    name: str | None = None
    # Every key must be present on the cluster with exactly this value.
    labels: dict[str, str] | None = None
    # tbot compatibility: accepted so a tbot block works verbatim, ignored (Argo CD has no
    # default namespace per cluster); ``AgentConfig.warnings`` reports it.
    default_namespace: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Selector:
        if (self.name is None) == (self.labels is None):
            raise ValueError("set exactly one of 'name' or 'labels' in each selector")
        if self.name is not None and not self.name.strip():
            raise ValueError("'name' cannot be blank")
        if self.labels is not None and not self.labels:
            raise ValueError("'labels' must list at least one label (use name: for one cluster)")
        return self

    def describe(self) -> str:
        if self.name is not None:
            return f"name={self.name}"
        assert self.labels is not None
        return "labels=" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def _checked_keys(
    value: dict[str, Template], what: str, reserved: Callable[[str], bool]
) -> dict[str, Template]:
    """Label or annotation keys: valid Kubernetes keys, none of those the agent sets."""
    for key in value:
        if problems := label_key_problems(key):
            raise ValueError(f"{what} key {key!r} {'; '.join(problems)}")
        if reserved(key):
            raise ValueError(f"{what} {key!r} is set by the agent and cannot be overridden")
    return value


class ArgoCDService(_Strict):
    """A ``kubernetes/argo-cd`` service: one Argo CD cluster secret per matching cluster."""

    type: Literal["kubernetes/argo-cd"]
    # Name used in logs, metrics, /readyz and the ownership label. Default: "argo-cd".
    name: str = ""
    # Clusters to register; several selectors are a union. At least one is required.
    selectors: list[Selector] = Field(min_length=1)
    # Namespace the secrets are written to. Default: $POD_NAMESPACE, then "default".
    secret_namespace: Annotated[str, _refusing(_namespace_problem)] = ""
    # Secret names are "<prefix>.<16 hex>". Default: "teleport.argocd-cluster".
    secret_name_prefix: Annotated[str, _refusing(_name_prefix_problem)] = DEFAULT_SECRET_NAME_PREFIX
    # Extra labels (templates allowed). Default: none.
    secret_labels: dict[str, Template] = Field(default_factory=dict)
    # Extra annotations (templates allowed). Default: none.
    secret_annotations: dict[str, Template] = Field(default_factory=dict)
    # Argo CD project the clusters belong to. Default: none (any project).
    project: str = ""
    # Namespaces Argo CD may manage in each cluster. Default: none (all namespaces).
    namespaces: Annotated[list[NamespaceName], _refusing(_repeated_namespace)] = Field(
        default_factory=list
    )
    # Whether Argo CD may manage cluster-scoped resources; only with namespaces. Default: false.
    cluster_resources: bool = False
    # The cluster's display name in Argo CD. Default: "{{.ClusterName}}-{{.KubeName}}".
    cluster_name_template: Template = Field(
        default_factory=lambda: Template(DEFAULT_CLUSTER_NAME_TEMPLATE)
    )
    # Per-service credential lifetime; both or neither. Default: the agent-wide values.
    credential_ttl: Duration | None = None
    renewal_interval: Duration | None = None
    # How often to look for newly matching clusters between renewals. Default: 30s.
    discovery_interval: Annotated[Duration, _refusing(_too_frequent)] = timedelta(seconds=30)
    # Delete this service's secrets for clusters no longer selected. Default: false.
    prune: bool = False

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @field_validator("secret_labels", "secret_annotations", mode="before")
    @classmethod
    def _parse_templates(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        parsed: dict[object, object] = {}
        for key, raw in value.items():
            if not isinstance(raw, str):
                raise ValueError(f"value of {key!r} must be a string (quote it in YAML)")
            try:
                parsed[key] = Template(raw)
            except TemplateError as exc:
                raise ValueError(f"{key}: {exc}") from exc
        return parsed

    @field_validator("cluster_name_template", mode="before")
    @classmethod
    def _parse_name_template(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("cannot be blank (default: {{.ClusterName}}-{{.KubeName}})")
            try:
                return Template(value)
            except TemplateError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("secret_labels")
    @classmethod
    def _label_keys(cls, value: dict[str, Template]) -> dict[str, Template]:
        return _checked_keys(value, "label", is_reserved_label)

    @field_validator("secret_annotations")
    @classmethod
    def _annotation_keys(cls, value: dict[str, Template]) -> dict[str, Template]:
        return _checked_keys(value, "annotation", is_reserved_annotation)

    @model_validator(mode="before")
    @classmethod
    def _default_namespace(cls, data: Any) -> Any:
        # Read the environment once, here, so that the model (and everything computed from it)
        # is a plain value afterwards.
        if isinstance(data, dict) and not data.get("secret_namespace"):
            return {**data, "secret_namespace": pod_namespace()}
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> ArgoCDService:
        if self.cluster_resources and not self.namespaces:
            raise ValueError(
                "cluster_resources is only applicable if namespaces is also set "
                "(without namespaces Argo CD already manages cluster-scoped resources)"
            )
        _check_lifetime(self.credential_ttl, self.renewal_interval)
        return self

    def resolved_namespace(self) -> str:
        """Where the secrets go (the default was filled in from $POD_NAMESPACE when parsed)."""
        return self.secret_namespace or "default"

    def resolved_name(self) -> str:
        """The name in logs, metrics, /readyz and the ownership label."""
        return self.name or DEFAULT_SERVICE_NAME


class Onboarding(_Strict):
    """How the bot joins Teleport."""

    # "kubernetes": the pod's service-account token (reusable); "token": a one-time secret.
    join_method: Literal["kubernetes", "token"] = "kubernetes"
    # Join token name (kubernetes) or the secret token; a value starting with "/" is a file
    # to read it from, so the secret never sits in the config.
    token: str = Field(min_length=1)

    def __repr__(self) -> str:
        token = (
            self.token if self.join_method == "kubernetes" or self.token.startswith("/") else "***"
        )
        return f"Onboarding(join_method={self.join_method!r}, token={token!r})"

    __str__ = __repr__


class MemoryStorage(_Strict):
    type: Literal["memory"]


class KubernetesSecretStorage(_Strict):
    type: Literal["kubernetes_secret"]
    name: Annotated[str, _refusing(_secret_name_problem)]


Storage = Annotated[MemoryStorage | KubernetesSecretStorage, Field(discriminator="type")]


class AgentConfig(BaseSettings):
    """The whole agent configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, populate_by_name=True
    )

    version: Literal["v2"] = "v2"
    # Teleport proxy address host:port (required). The Auth Service is reached through it
    # (TLS routing); tbot's auth_server (straight to Auth) is not supported and is refused.
    proxy_server: Annotated[str, _refusing(_address_problem)] = ""
    # PEM file of a private CA that signs the proxy's web certificate, trusted in addition
    # to the system's CAs. TLS verification is never skipped. Default: system trust only.
    proxy_ca_path: str = ""
    onboarding: Onboarding
    # Lifetime of issued credentials and how often they are renewed. Default: 1h / 20m.
    credential_ttl: Duration = timedelta(hours=1)
    renewal_interval: Duration = timedelta(minutes=20)
    # After a renewal, existing secrets get the new credential spread evenly over this window,
    # so Argo CD rebuilds one cluster cache at a time instead of all at once; 0s writes them
    # all at once. Default: a quarter of the shorter of renewal_interval and
    # credential_ttl - renewal_interval (5m with the default 1h / 20m).
    rotation_window: Duration | None = None
    # Where the bot identity lives: memory (kubernetes join) or a Secret (token join).
    storage: Storage = Field(default_factory=lambda: MemoryStorage(type="memory"))
    # The chart's ValidatingAdmissionPolicy guards this ServiceAccount: the API server itself
    # refuses a write to a secret that is not this agent's, so the agent skips its own dry-run
    # ownership check before the first write of each secret (one request per write, not two).
    # Default: false (the agent checks).
    admission_policy: bool = False
    # The start every secret's `server` must have for the chart's admission policy to accept
    # it (`https://<proxy public address>/v1/teleport/`, chart value
    # admissionPolicy.proxyPublicAddress). The agent refuses to write when the address
    # Teleport advertises gives another start, instead of having every write refused.
    # Default: "" (no such check).
    allowed_server_prefix: Annotated[str, _refusing(_server_prefix_problem)] = ""
    # host:port for /livez, /readyz and /metrics. Default: disabled.
    diag_addr: Annotated[str, _refusing(_listen_address_problem)] = ""
    # Identifies this installation in ownership labels.
    # Default: "$POD_NAMESPACE/teleport-argocd-agent".
    instance: str = ""
    # tbot compatibility: debug logging.
    debug: bool = False
    # The Argo CD services; "outputs" is accepted as an alias.
    services: list[ArgoCDService] = Field(min_length=1, validation_alias="services")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file: that is how a pod patches one value.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _no_auth_server(cls, data: Any) -> Any:
        if isinstance(data, dict) and "auth_server" in data:
            raise ValueError(
                "auth_server is not supported: the agent reaches the Auth Service through the "
                "Teleport proxy (TLS routing). Remove auth_server and set proxy_server to the "
                "proxy's public address, e.g. teleport.example.com:443"
            )
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_instance(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("instance"):
            return {**data, "instance": f"{pod_namespace()}/teleport-argocd-agent"}
        return data

    @model_validator(mode="after")
    def _cross_field(self) -> AgentConfig:
        if not self.proxy_server:
            raise ValueError(
                "proxy_server is required: the Teleport proxy's public address, e.g. "
                "teleport.example.com:443"
            )
        _check_lifetime(self.credential_ttl, self.renewal_interval)
        self._check_rotation_window()
        if self.onboarding.join_method == "token" and self.storage.type == "memory":
            raise ValueError(
                "onboarding.join_method 'token' needs storage type kubernetes_secret: a join "
                "token works once, so the identity must survive a restart"
            )
        names = [s.resolved_name() for s in self.services]
        if len(self.services) > 1 and any(not s.name for s in self.services):
            raise ValueError(
                "give every service a unique 'name' when there is more than one: the name "
                "identifies which secrets each service owns"
            )
        if len(set(names)) != len(names):
            raise ValueError("services must have unique names")
        return self

    def rotation_window_for(self, ttl: timedelta, interval: timedelta) -> timedelta:
        """The rotation window of a credential with this lifetime and renewal interval."""
        if self.rotation_window is not None:
            return self.rotation_window
        return default_rotation_window(ttl, interval)

    def _check_rotation_window(self) -> None:
        window = self.rotation_window
        if window is None:
            return
        if window < timedelta(0):
            raise ValueError("rotation_window must not be negative (0s writes all at once)")
        lifetimes = {(self.credential_ttl, self.renewal_interval)} | {
            (s.credential_ttl, s.renewal_interval)
            for s in self.services
            if s.credential_ttl is not None and s.renewal_interval is not None
        }
        for ttl, interval in sorted(lifetimes):
            limit = max_rotation_window(ttl, interval)
            if window > limit:
                raise ValueError(
                    f"rotation_window ({format_duration(window)}) must be at most "
                    f"{format_duration(limit)} with credential_ttl {format_duration(ttl)} and "
                    f"renewal_interval {format_duration(interval)}: half of the shorter of "
                    "renewal_interval and credential_ttl - renewal_interval, so the last secret "
                    "gets its new credential long before its old one expires and before the "
                    "next renewal starts. Shorten rotation_window or lengthen credential_ttl"
                )

    def warnings(self) -> list[str]:
        """Accepted settings that do nothing here, for a warning at start."""
        out = []
        for index, service in enumerate(self.services):
            for number, selector in enumerate(service.selectors):
                if selector.default_namespace is not None:
                    out.append(
                        f"services[{index}].selectors[{number}].default_namespace is ignored: "
                        "it is a tbot setting without meaning for Argo CD cluster secrets"
                    )
        return out

    def resolved_instance(self) -> str:
        """This installation's identity (the default was filled in when parsed)."""
        return self.instance or "default/teleport-argocd-agent"


def max_rotation_window(ttl: timedelta, interval: timedelta) -> timedelta:
    """The longest rotation window that leaves the old credential half its spare life."""
    return min(interval, ttl - interval) / 2


def default_rotation_window(ttl: timedelta, interval: timedelta) -> timedelta:
    """Half the longest allowed window: the spread without cutting the margin close."""
    return max_rotation_window(ttl, interval) / 2


# -- loading ----------------------------------------------------------------------------------


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("kubernetes/argo-cd", "memory", "kubernetes_secret", "function-after"):
            continue  # discriminator tags and validator names are not part of the user's path
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Any) -> str:
    kind, msg, loc = err["type"], err["msg"], tuple(err["loc"])
    if kind == "extra_forbidden":
        return f"{_loc(loc)}: unknown key (check its spelling; see the configuration reference)"
    if kind == "too_short" and loc and loc[-1] in ("selectors", "services"):
        what = "selector" if loc[-1] == "selectors" else "kubernetes/argo-cd service"
        return f"{_loc(loc)}: at least one {what} is required"
    if kind == "missing":
        return f"{_loc(loc)}: required key is missing"
    if kind == "literal_error" and loc and loc[-1] == "type":
        return f"{_loc(loc)}: {msg} (this agent provides only the kubernetes/argo-cd service)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{_loc(loc)}: storage type must be 'memory' or 'kubernetes_secret'"
    msg = msg.removeprefix("Value error, ")
    where = _loc(loc)
    return f"{where}: {msg}" if where else msg


def parse_config(data: object, *, source: str = "config") -> AgentConfig:
    """Validate an already-parsed YAML document; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a YAML mapping of keys to values")
    data = dict(data)
    if "outputs" in data:
        if "services" in data:
            raise ConfigError(f"{source}: use either 'services' or 'outputs', not both")
        data["services"] = data.pop("outputs")
    try:
        return AgentConfig(**data)
    except ValidationError as exc:
        lines = sorted({_message(e) for e in exc.errors()})
        raise ConfigError(
            f"{source} is invalid:\n" + "\n".join(f"  - {m}" for m in lines)
        ) from None


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate the YAML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, source=str(path))
