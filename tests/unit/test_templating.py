from __future__ import annotations

import pytest

from agent.templating import Template, TemplateContext, TemplateError

CTX = TemplateContext("root", "kube-1", {"team": "payments", "env": "prod"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("{{.ClusterName}}-{{.KubeName}}", "root-kube-1", id="default-name"),
        pytest.param("{{ .KubeName }}", "kube-1", id="spaces"),
        pytest.param('{{ index .Labels "team" }}', "payments", id="label"),
        pytest.param("{{ index .Labels `env` }}", "prod", id="backquoted-key"),
        pytest.param('{{ index .Labels "missing" }}', "", id="missing-label-renders-empty"),
        pytest.param('x-{{index .Labels "team"}}-y', "x-payments-y", id="mixed-text"),
        pytest.param("a {{- .KubeName -}} b", "akube-1b", id="trim-markers"),
        pytest.param("constant", "constant", id="constant"),
        pytest.param("", "", id="empty"),
        pytest.param('{{ index .Labels "te\\"am" }}', "", id="escaped-quote-key"),
    ],
)
def test_supported_subset_renders(source, expected):
    assert Template(source).render(CTX) == expected


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ .Foo }}", id="unknown-field"),
        pytest.param("{{ .Labels.team }}", id="field-access-on-labels"),
        pytest.param("{{ index .Labels team }}", id="unquoted-key"),
        pytest.param("{{ .KubeName ", id="unterminated"),
        pytest.param("}} stray", id="stray-close"),
        pytest.param('{{ printf "%s" .KubeName }}', id="function-call"),
        pytest.param("{{ if .KubeName }}x{{ end }}", id="control-flow"),
        pytest.param('{{ index .Labels "a }}', id="unterminated-string"),
        pytest.param("{{ .KubeName {{ .KubeName }}", id="action-opened-inside-action"),
    ],
)
def test_anything_else_is_rejected_with_the_supported_forms(source):
    with pytest.raises(TemplateError, match=r"\{\{\.ClusterName\}\}|invalid string|unterminated"):
        Template(source)


def test_constant_detection():
    assert Template("abc").is_constant
    assert not Template("{{.KubeName}}").is_constant
