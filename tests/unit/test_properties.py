"""Property tests (hypothesis) for names, label values, templates and durations: the edges a
table of examples misses."""

from __future__ import annotations

import datetime as dt
import json
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.argocd import cluster_hash, secret_name
from agent.config import format_duration, parse_duration
from agent.names import dns_subdomain_problems, label_value_problems
from agent.templating import Template, TemplateContext

LABEL_CHARS = st.sampled_from("abcXYZ019-_.")
ALNUM = st.sampled_from("abcXYZ019")
# The test machine is shared and loaded: time limits per example would make these flaky.
RELAXED = settings(deadline=None, max_examples=60)


@st.composite
def label_values(draw: st.DrawFn, size: int) -> str:
    """A label value of exactly ``size`` characters made of allowed characters."""
    if size == 1:
        return str(draw(ALNUM))
    middle = draw(st.text(LABEL_CHARS, min_size=size - 2, max_size=size - 2))
    return str(draw(ALNUM)) + middle + str(draw(ALNUM))


@RELAXED
@given(label_values(63))
def test_label_value_of_63_characters_is_valid(value):
    assert label_value_problems(value) == []


@RELAXED
@given(label_values(64))
def test_label_value_of_64_characters_is_not(value):
    assert label_value_problems(value) == ["must be no more than 63 characters"]


@RELAXED
@given(st.text(min_size=0, max_size=30), st.text(min_size=0, max_size=30))
def test_secret_names_are_valid_and_stable_for_any_cluster_names(teleport, kube):
    name = secret_name("teleport.argocd-cluster", teleport, kube)
    assert dns_subdomain_problems(name) == []
    assert re.fullmatch(r"teleport\.argocd-cluster\.[0-9a-f]{16}", name)
    assert name == secret_name("teleport.argocd-cluster", teleport, kube)
    assert cluster_hash(teleport, kube) == name.rsplit(".", 1)[1]


@RELAXED
@given(st.text(max_size=20), st.dictionaries(st.text(max_size=10), st.text(max_size=10)))
# Braces inside the quoted key are part of the key, as Go's lexer reads a string as one token.
@example("{{", {"{{": "open"})
@example("}}", {"}}": "close"})
@example("-}} {{-", {})
def test_label_templates_render_the_label_or_nothing(key, labels):
    rendered = Template(f"{{{{ index .Labels {json.dumps(key)} }}}}").render(
        TemplateContext("root", "kube", labels)
    )
    assert rendered == labels.get(key, "")


@RELAXED
@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=40))
def test_text_without_actions_renders_as_itself(text):
    assert Template(text).render(TemplateContext("root", "kube", {})) == text


@RELAXED
@given(st.integers(min_value=0, max_value=10 * 365 * 24 * 3600))
def test_whole_second_durations_round_trip_through_their_config_form(seconds):
    value = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
