"""The bot-identity decision: reuse, join, renew or re-join, from the identity, clock and method."""

from __future__ import annotations

import datetime as dt

import pytest

from agent.teleport.errors import IdentityExpired
from agent.teleport.lifecycle import BotStep, next_bot_step
from agent.teleport.model import BotIdentity

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
M = dt.timedelta(minutes=1)


def issued(ago: dt.timedelta, life: dt.timedelta = 60 * M) -> BotIdentity:
    """An identity issued ``ago`` (NotBefore is backdated a minute, as Teleport does)."""
    start = NOW - ago
    return BotIdentity(b"CERT", b"KEY", (), not_before=start - M, expires=start + life)


ROWS = [
    # (id, identity, join method, read only, step)
    ("no identity: join", None, "kubernetes", False, BotStep.JOIN),
    ("no identity, token method: join", None, "token", False, BotStep.JOIN),
    ("token method, valid: renew", issued(20 * M), "token", False, BotStep.RENEW),
    ("kubernetes method, valid: re-join", issued(20 * M), "kubernetes", False, BotStep.REJOIN),
    ("issued seconds ago: reuse", issued(2 * S), "token", False, BotStep.REUSE),
    ("issued just past the minimum age: renew", issued(6 * S), "token", False, BotStep.RENEW),
    ("expired: join", issued(61 * M), "kubernetes", False, BotStep.JOIN),
    ("expired, token method: join", issued(61 * M), "token", False, BotStep.JOIN),
    ("expires within 30 s: join", issued(60 * M - 20 * S), "kubernetes", False, BotStep.JOIN),
    ("expires in 40 s: re-join", issued(60 * M - 40 * S), "kubernetes", False, BotStep.REJOIN),
    # A 1-minute identity: the margin is a quarter of its life past the backdating (15 s).
    ("short life, 20 s left: re-join", issued(40 * S, M), "kubernetes", False, BotStep.REJOIN),
    ("short life, 10 s left: join", issued(50 * S, M), "kubernetes", False, BotStep.JOIN),
    ("read only, valid: reuse", issued(20 * M), "token", True, BotStep.REUSE),
    ("read only, seconds from expiry: reuse", issued(60 * M - 5 * S), "token", True, BotStep.REUSE),
    ("read only, kubernetes, none: join", None, "kubernetes", True, BotStep.JOIN),
    ("read only, kubernetes, expired: join", issued(61 * M), "kubernetes", True, BotStep.JOIN),
]


@pytest.mark.parametrize(
    ("bot", "method", "read_only", "step"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_next_bot_step(bot, method, read_only, step):
    assert (
        next_bot_step(bot, now=NOW, join_method=method, read_only=read_only, storage="memory")
        is step
    )


@pytest.mark.parametrize("bot", [None, issued(61 * M)], ids=["none", "expired"])
def test_read_only_never_spends_the_one_time_token(bot):
    with pytest.raises(IdentityExpired, match="start the agent first"):
        next_bot_step(
            bot, now=NOW, join_method="token", read_only=True, storage="secret argocd/bot"
        )
