from __future__ import annotations

import datetime as dt
import random

from agent.schedule import readiness, renewal_delay, retry_delay

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=1)
EVERY = dt.timedelta(minutes=20)


def test_renewal_is_one_interval_later_minus_bounded_jitter():
    delay = renewal_delay(EVERY, rng=random.Random(1))
    assert EVERY * 0.9 <= delay <= EVERY


def test_jitter_spreads_agents():
    delays = {renewal_delay(EVERY, rng=random.Random(seed)) for seed in range(20)}
    assert len(delays) > 10


def ready(now, expires, problems=None, failed=None):
    return readiness(
        now=now,
        credential_expires=expires,
        renewal_interval=EVERY,
        selector_problems=problems or {},
        failed_writes=failed or {},
    )


def test_ready_with_a_fresh_credential_and_no_problems():
    state = ready(T0, T0 + TTL)
    assert state.ready
    assert state.as_json() == {"status": "ok", "reasons": [], "warnings": []}


def test_not_ready_before_the_first_credential_or_close_to_expiry():
    assert not ready(T0, None).ready
    near = ready(T0, T0 + EVERY - dt.timedelta(seconds=1))
    assert not near.ready
    assert "within one renewal interval" in near.reasons[0]


def test_failed_writes_degrade_readiness_and_recover():
    degraded = ready(T0, T0 + TTL, failed={"argo-cd": 2})
    assert not degraded.ready
    assert degraded.reasons == ("service argo-cd: 2 secret(s) failed to write",)
    assert ready(T0, T0 + TTL, {"argo-cd": {}}, {"argo-cd": 0}).ready


def test_unmatched_selector_is_a_warning_not_unreadiness():
    # Readiness means "the agent is doing its job"; a selector naming a cluster that is not
    # there (yet) must not keep `helm install --wait` or an Argo CD Application from finishing.
    state = ready(T0, T0 + TTL, {"argo-cd": {"name=gone": "matched no cluster"}})
    assert state.ready
    assert state.warnings == ("service argo-cd: selector name=gone matched no cluster",)
    assert state.as_json() == {
        "status": "ok",
        "reasons": [],
        "warnings": ["service argo-cd: selector name=gone matched no cluster"],
    }


def test_retry_delay_grows_exponentially_up_to_the_cap_with_jitter():
    first, cap = dt.timedelta(seconds=1), dt.timedelta(seconds=60)
    rng = random.Random(7)
    assert retry_delay(0, first=first, cap=cap) == dt.timedelta(0)
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (7, 60), (100, 60)]:
        for _ in range(50):
            delay = retry_delay(failures, first=first, cap=cap, rng=rng).total_seconds()
            assert ceiling / 2 <= delay <= ceiling
