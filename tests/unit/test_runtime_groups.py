"""Which services share a credential."""

from __future__ import annotations

import datetime as dt

from agent.config import parse_config
from agent.keeper import credential_groups
from agent.rotation import Clock

CLOCK = Clock(lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC), lambda: 0.0)


def service(name, **extra):
    return {"type": "kubernetes/argo-cd", "name": name, "selectors": [{"name": name}], **extra}


def test_services_share_a_credential_unless_they_set_their_own_lifetime():
    config = parse_config(
        {
            "proxy_server": "teleport.example.com:443",
            "onboarding": {"token": "bot"},
            "credential_ttl": "2h",
            "renewal_interval": "30m",
            "services": [
                service("a"),
                service("b", credential_ttl="8h", renewal_interval="1h"),
                service("c"),
                service("d", credential_ttl="2h", renewal_interval="30m"),
            ],
        }
    )
    groups = [
        (tuple(s.name for s in g.services), g.ttl, g.interval)
        for g in credential_groups(config, CLOCK)
    ]
    assert groups == [
        (("a", "c", "d"), dt.timedelta(hours=2), dt.timedelta(minutes=30)),
        (("b",), dt.timedelta(hours=8), dt.timedelta(hours=1)),
    ]
