from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
import yaml

from agent.config import ConfigError, format_duration, load_config, parse_config, parse_duration

TBOT_SERVICE_BLOCK = """
type: kubernetes/argo-cd
name: my-argo-service
credential_ttl: 1m0s
renewal_interval: 30s
selectors:
  - name: foo
  - labels:
      foo: bar
secret_namespace: argocd
secret_name_prefix: my-argo-cluster
secret_labels:
  my-label: value
secret_annotations:
  my-annotation: value
project: super-secret-project
namespaces:
  - prod
  - dev
cluster_resources: true
"""


def base() -> dict[str, Any]:
    return {
        "version": "v2",
        "proxy_server": "teleport.example.com:443",
        "onboarding": {"join_method": "kubernetes", "token": "argocd-bot"},
        "services": [{"type": "kubernetes/argo-cd", "selectors": [{"labels": {"env": "prod"}}]}],
    }


def test_tbot_service_block_is_accepted_verbatim():
    cfg = base()
    cfg["services"] = [yaml.safe_load(TBOT_SERVICE_BLOCK)]
    parsed = parse_config(cfg)
    service = parsed.services[0]
    assert service.name == "my-argo-service"
    assert service.credential_ttl == timedelta(minutes=1)
    assert service.renewal_interval == timedelta(seconds=30)
    assert [s.describe() for s in service.selectors] == ["name=foo", "labels=foo=bar"]
    assert service.namespaces == ["prod", "dev"]
    assert service.cluster_resources is True
    assert service.secret_labels["my-label"].source == "value"


def test_defaults_match_the_documented_ones(monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    parsed = parse_config(base())
    service = parsed.services[0]
    assert parsed.credential_ttl == timedelta(hours=1)
    assert parsed.renewal_interval == timedelta(minutes=20)
    assert parsed.storage.type == "memory"
    assert service.secret_name_prefix == "teleport.argocd-cluster"
    assert service.cluster_name_template.source == "{{.ClusterName}}-{{.KubeName}}"
    assert service.discovery_interval == timedelta(seconds=30)
    assert service.prune is False
    assert service.resolved_namespace() == "default"
    monkeypatch.setenv("POD_NAMESPACE", "argocd")
    assert service.resolved_namespace() == "default", "read when parsed, not when used"
    parsed = parse_config(base())
    assert parsed.services[0].resolved_namespace() == "argocd"
    assert parsed.resolved_instance() == "argocd/teleport-argocd-agent"


def test_outputs_is_an_alias_for_services():
    cfg = base()
    cfg["outputs"] = cfg.pop("services")
    assert len(parse_config(cfg).services) == 1


def test_several_services_with_distinct_names_and_prefixes():
    cfg = base()
    cfg["services"] = [
        {
            "type": "kubernetes/argo-cd",
            "name": "team-a",
            "project": "a",
            "secret_name_prefix": "a",
            "selectors": [{"labels": {"team": "a"}}],
        },
        {
            "type": "kubernetes/argo-cd",
            "name": "team-b",
            "project": "b",
            "secret_name_prefix": "b",
            "selectors": [{"labels": {"team": "b"}}],
        },
    ]
    parsed = parse_config(cfg)
    assert [s.name for s in parsed.services] == ["team-a", "team-b"]


def test_environment_overrides_top_level_scalars(monkeypatch):
    monkeypatch.setenv("TELEPORT_ARGOCD_AGENT_PROXY_SERVER", "other.example.com:443")
    monkeypatch.setenv("TELEPORT_ARGOCD_AGENT_RENEWAL_INTERVAL", "10m")
    parsed = parse_config(base())
    assert parsed.proxy_server == "other.example.com:443"
    assert parsed.renewal_interval == timedelta(minutes=10)


def test_token_repr_is_redacted_for_token_join():
    cfg = base()
    cfg["onboarding"] = {"join_method": "token", "token": "s3cr3t-value"}
    cfg["storage"] = {"type": "kubernetes_secret", "name": "agent-identity"}
    parsed = parse_config(cfg)
    assert "s3cr3t" not in repr(parsed)
    assert "s3cr3t" not in str(parsed.onboarding)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h", 3600),
        ("20m", 1200),
        ("30s", 30),
        ("1m0s", 60),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5h", 5400),
        (45, 45),
    ],
)
def test_durations_parse_go_syntax(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


def test_duration_round_trips_through_format():
    for text in ("1h", "20m", "30s", "1h30m", "1h0m5s"):
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def svc(**changes: Any) -> dict[str, Any]:
    cfg = base()
    cfg["services"][0].update(changes)
    return cfg


def top(**changes: Any) -> dict[str, Any]:
    cfg = base()
    cfg.update(changes)
    return cfg


def without(key: str) -> dict[str, Any]:
    cfg = base()
    del cfg[key]
    return cfg


BAD_CONFIGS = [
    ("no-selectors", svc(selectors=[]), "services[0].selectors: at least one selector"),
    (
        "selector-both",
        svc(selectors=[{"name": "a", "labels": {"x": "y"}}]),
        "services[0].selectors[0]: set exactly one of 'name' or 'labels'",
    ),
    ("selector-neither", svc(selectors=[{}]), "services[0].selectors[0]: set exactly one"),
    ("selector-empty-labels", svc(selectors=[{"labels": {}}]), "services[0].selectors[0]"),
    ("selector-blank-name", svc(selectors=[{"name": "  "}]), "'name' cannot be blank"),
    ("selector-unknown-key", svc(selectors=[{"nmae": "a"}]), "services[0].selectors[0].nmae"),
    (
        "selector-label-not-string",
        svc(selectors=[{"labels": {"a": 1}}]),
        "services[0].selectors[0].labels.a",
    ),
    (
        "prefix-trailing-dash",
        svc(secret_name_prefix="my-argo-cluster-"),
        "services[0].secret_name_prefix",
    ),
    ("prefix-uppercase", svc(secret_name_prefix="Teleport"), "services[0].secret_name_prefix"),
    ("prefix-too-long", svc(secret_name_prefix="a" * 240), "no more than 253"),
    (
        "namespaces-blank",
        svc(namespaces=["prod", ""]),
        "services[0].namespaces[1]: cannot be blank",
    ),
    ("namespaces-invalid", svc(namespaces=["Prod"]), "services[0].namespaces[0]: 'Prod'"),
    ("namespaces-duplicate", svc(namespaces=["a", "a"]), "services[0].namespaces: lists the same"),
    (
        "cluster-resources-alone",
        svc(cluster_resources=True),
        "cluster_resources is only applicable if namespaces is also set",
    ),
    ("service-ttl-only", svc(credential_ttl="1h"), "set both credential_ttl and renewal_interval"),
    ("service-renewal-only", svc(renewal_interval="10m"), "set both credential_ttl"),
    (
        "service-renewal-too-long",
        svc(credential_ttl="10m", renewal_interval="10m"),
        "renewal_interval (10m) must be shorter than credential_ttl (10m)",
    ),
    (
        "top-renewal-too-long",
        top(renewal_interval="2h"),
        "renewal_interval (2h) must be shorter than credential_ttl (1h)",
    ),
    (
        "bad-duration",
        top(credential_ttl="one hour"),
        "credential_ttl: 'one hour' is not a duration",
    ),
    (
        "duration-beyond-go-range",
        top(credential_ttl="99999999999h"),
        "credential_ttl: '99999999999h' is out of range",
    ),
    ("duration-infinite", top(credential_ttl=float("inf")), "credential_ttl: inf is out of range"),
    ("duration-nan", top(renewal_interval=float("nan")), "renewal_interval: nan is out of range"),
    (
        "service-duration-infinite",
        svc(credential_ttl=".inf", renewal_interval="1m"),
        "services[0].credential_ttl: '.inf' is not a duration",
    ),
    (
        "bad-template-field",
        svc(cluster_name_template="{{ .Name }}"),
        "services[0].cluster_name_template: unsupported action",
    ),
    (
        "bad-template-label",
        svc(secret_labels={"team": "{{ .Labels.team }}"}),
        "services[0].secret_labels",
    ),
    (
        "unparsable-template",
        svc(secret_annotations={"a": "{{ .KubeName"}),
        "services[0].secret_annotations",
    ),
    (
        "blank-name-template",
        svc(cluster_name_template=""),
        "cluster_name_template: cannot be blank",
    ),
    (
        "reserved-label",
        svc(secret_labels={"argocd.argoproj.io/secret-type": "repository"}),
        "cannot be overridden",
    ),
    (
        "reserved-annotation",
        svc(secret_annotations={"teleport.dev/bot-name": "x"}),
        "cannot be overridden",
    ),
    ("invalid-label-key", svc(secret_labels={"bad key": "x"}), "label key 'bad key'"),
    ("label-value-not-string", svc(secret_labels={"n": 5}), "must be a string"),
    (
        "unknown-service-key",
        svc(clusterSelector=[{"name": "a"}]),
        "services[0].clusterSelector: unknown key",
    ),
    ("unknown-top-key", top(proxy_sever="x:443"), "proxy_sever: unknown key"),
    ("wrong-service-type", svc(type="kubernetes/v2"), "only the kubernetes/argo-cd service"),
    ("no-services", top(services=[]), "services: at least one kubernetes/argo-cd service"),
    ("no-proxy", without("proxy_server"), "proxy_server is required"),
    ("auth-server", top(auth_server="auth:3025"), "auth_server is not supported"),
    ("proxy-with-scheme", top(proxy_server="https://teleport.example.com"), "proxy_server:"),
    ("no-onboarding", without("onboarding"), "onboarding: required key is missing"),
    ("empty-token", top(onboarding={"token": ""}), "onboarding.token"),
    (
        "bad-join-method",
        top(onboarding={"token": "t", "join_method": "iam"}),
        "onboarding.join_method",
    ),
    (
        "token-join-memory",
        top(onboarding={"token": "t", "join_method": "token"}),
        "needs storage type kubernetes_secret",
    ),
    ("bad-storage", top(storage={"type": "disk"}), "storage type must be 'memory'"),
    ("bad-secret-namespace", svc(secret_namespace="Argo_CD"), "services[0].secret_namespace"),
    ("bad-version", top(version="v1"), "version:"),
    (
        "discovery-too-fast",
        svc(discovery_interval="10ms"),
        "discovery_interval must be at least 1s",
    ),
    ("diag-addr-no-port", top(diag_addr="localhost"), "diag_addr"),
    (
        "unnamed-services",
        top(services=[base()["services"][0], base()["services"][0]]),
        "give every service a unique 'name'",
    ),
    (
        "duplicate-service-names",
        top(
            services=[
                {**base()["services"][0], "name": "a"},
                {**base()["services"][0], "name": "a"},
            ]
        ),
        "services must have unique names",
    ),
]


@pytest.mark.parametrize(("cfg", "message"), [pytest.param(c, m, id=i) for i, c, m in BAD_CONFIGS])
def test_malformed_config_is_rejected_naming_the_field(cfg, message):
    original = copy.deepcopy(cfg)
    with pytest.raises(ConfigError) as excinfo:
        parse_config(cfg)
    assert message in str(excinfo.value)
    assert cfg == original  # validation never mutates the caller's document


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("services: [", "is not valid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("", "must be a YAML mapping"),
    ],
)
def test_load_config_reports_unreadable_files(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_both_services_and_outputs_is_ambiguous():
    cfg = base()
    cfg["outputs"] = cfg["services"]
    with pytest.raises(ConfigError, match="either 'services' or 'outputs'"):
        parse_config(cfg)


def test_a_verbatim_tbot_selector_with_default_namespace_is_accepted_with_a_warning():
    config = parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "t"},
            "services": [
                {
                    "type": "kubernetes/argo-cd",
                    "selectors": [{"name": "a", "default_namespace": "apps"}],
                }
            ],
        }
    )
    assert config.warnings() == [
        "services[0].selectors[0].default_namespace is ignored: it is a tbot setting without "
        "meaning for Argo CD cluster secrets"
    ]
