"""What to do with the bot identity now (TELEPORT.md §5): reuse, join, renew or re-join.

The decision is a pure function of the identity held, the clock and the join method; the
Teleport client (``client.py``) carries it out. Purely computational, no side-effects.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Literal

from agent.teleport.errors import IdentityExpired, Operation
from agent.teleport.model import BotIdentity

__all__ = ["BACKDATE", "RENEW_MIN_AGE", "BotStep", "next_bot_step"]

# A bot identity younger than this is not renewed again: several credential groups renewing
# in one step share one renewal (and one generation).
RENEW_MIN_AGE = dt.timedelta(seconds=5)
# NotBefore is backdated one minute by Teleport (§4): the issue time is NotBefore + 1 min.
BACKDATE = dt.timedelta(minutes=1)
# Join again this long before expiry (at most a quarter of the identity's life), so no request
# is made with a dying identity.
EXPIRY_MARGIN = dt.timedelta(seconds=30)


class BotStep(StrEnum):
    REUSE = "reuse"  # the identity held is good as it is
    JOIN = "join"  # a join through the web API: a new bot instance
    RENEW = "renew"  # token method: renew over the authenticated Auth connection
    REJOIN = "rejoin"  # kubernetes method: re-join over Auth, keeping the bot instance


def next_bot_step(
    bot: BotIdentity | None,
    *,
    now: dt.datetime,
    join_method: Literal["kubernetes", "token"],
    read_only: bool,
    storage: str,
) -> BotStep:
    """The step that yields a usable bot identity now.

    ``read_only`` (``plan``, ``check``) never renews a stored identity (a running agent may
    share the storage, and two renewers lock the bot) nor spends a one-time join token: with
    the token method and no valid identity in ``storage`` it raises IdentityExpired.
    """
    if read_only:
        if bot is not None and not bot.expired(now):
            return BotStep.REUSE
        if join_method == "token":
            raise IdentityExpired(
                Operation.JOIN,
                f"no valid bot identity in {storage}: start the agent first (plan and check "
                "never spend the one-time join token)",
            )
        return BotStep.JOIN
    if bot is None:
        return BotStep.JOIN
    margin = min(EXPIRY_MARGIN, (bot.expires - bot.not_before - BACKDATE) / 4)
    if bot.expired(now + margin):
        return BotStep.JOIN
    if now - (bot.not_before + BACKDATE) < RENEW_MIN_AGE:
        return BotStep.REUSE
    return BotStep.RENEW if join_method == "token" else BotStep.REJOIN
