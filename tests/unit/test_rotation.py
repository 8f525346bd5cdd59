"""The rotation window: when each secret gets a renewed credential, and its config limits."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import ConfigError, default_rotation_window, parse_config
from agent.schedule import rotation_offsets

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=5)


def keys(count):
    return [("argocd", f"teleport.argocd-cluster.{i:016x}") for i in range(count)]


def test_offsets_are_spread_evenly_over_the_window():
    held = dict.fromkeys(keys(10), NOW + dt.timedelta(minutes=40))
    offsets = sorted(rotation_offsets(held, now=NOW, window=WINDOW).values())
    assert offsets == [WINDOW * i / 10 for i in range(10)]


def test_the_order_is_stable_and_not_alphabetical():
    held = dict.fromkeys(keys(20), NOW + dt.timedelta(minutes=40))
    first = rotation_offsets(held, now=NOW, window=WINDOW)
    later = rotation_offsets(held, now=NOW + dt.timedelta(minutes=20), window=WINDOW)
    assert first == later
    by_offset = sorted(first, key=first.__getitem__)
    assert by_offset != sorted(by_offset), "hash order, so neighbours by name spread apart"


def test_a_secret_whose_old_credential_runs_short_moves_forward():
    held = dict.fromkeys(keys(4), NOW + dt.timedelta(minutes=40))
    last = max(rotation_offsets(held, now=NOW, window=WINDOW).items(), key=lambda kv: kv[1])[0]
    held[last] = NOW + dt.timedelta(minutes=2)  # Teleport granted a short life last time
    assert rotation_offsets(held, now=NOW, window=WINDOW)[last] == dt.timedelta(minutes=1)


@given(
    count=st.integers(min_value=1, max_value=200),
    window_s=st.integers(min_value=0, max_value=3600),
    left_s=st.integers(min_value=1, max_value=7200),
)
def test_every_slot_is_inside_the_window_and_before_the_old_credential_expires(
    count, window_s, left_s
):
    window = dt.timedelta(seconds=window_s)
    held = dict.fromkeys(keys(count), NOW + dt.timedelta(seconds=left_s))
    offsets = rotation_offsets(held, now=NOW, window=window)
    assert set(offsets) == set(held)
    for offset in offsets.values():
        assert dt.timedelta(0) <= offset < max(window, dt.timedelta(microseconds=1))
        assert offset <= dt.timedelta(seconds=left_s) / 2


def config(**top):
    return parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "services": [{"type": "kubernetes/argo-cd", "selectors": [{"name": "a"}]}],
            **top,
        }
    )


def test_the_default_window_is_a_quarter_of_the_spare_life():
    assert config().rotation_window_for(dt.timedelta(hours=1), dt.timedelta(minutes=20)) == (
        dt.timedelta(minutes=5)
    )
    assert default_rotation_window(dt.timedelta(hours=24), dt.timedelta(hours=20)) == (
        dt.timedelta(hours=1)
    )


def test_zero_means_all_at_once():
    assert config(rotation_window="0s").rotation_window_for(
        dt.timedelta(hours=1), dt.timedelta(minutes=20)
    ) == dt.timedelta(0)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        pytest.param(
            {"rotation_window": "11m"},
            "rotation_window (11m) must be at most 10m with credential_ttl 1h and "
            "renewal_interval 20m",
            id="longer-than-half-the-spare-life",
        ),
        pytest.param(
            {"credential_ttl": "2h", "renewal_interval": "20m", "rotation_window": "15m"},
            "rotation_window (15m) must be at most 10m",
            id="longer-than-half-the-renewal-interval",
        ),
    ],
)
def test_a_window_the_old_credential_would_not_outlive_is_rejected(top, message):
    with pytest.raises(ConfigError, match="rotation_window") as excinfo:
        config(**top)
    assert message in str(excinfo.value)
    assert "Shorten rotation_window or lengthen credential_ttl" in str(excinfo.value)


def test_a_per_service_lifetime_limits_the_window_too():
    with pytest.raises(ConfigError, match=r"rotation_window \(8m\) must be at most 5m"):
        parse_config(
            {
                "proxy_server": "teleport.example.com:443",
                "onboarding": {"token": "bot"},
                "rotation_window": "8m",
                "services": [
                    {
                        "type": "kubernetes/argo-cd",
                        "selectors": [{"name": "a"}],
                        "credential_ttl": "30m",
                        "renewal_interval": "10m",
                    }
                ],
            }
        )
