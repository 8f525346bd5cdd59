"""What can go wrong talking to Teleport, as a small exception tree.

Transport errors (sockets, TLS, HTTP statuses, gRPC codes) are mapped to these classes at the
boundary (``webapi.py``, ``auth.py``), so callers and logs never see a transport library's
exception types. Every message is a sentence that says what happened and what to do.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BOT_IDENTITY_OPERATIONS",
    "BotDeleted",
    "BotLocked",
    "IdentityExpired",
    "JoinRejected",
    "LoadBalancerInTheWay",
    "Operation",
    "ProxyUnreachable",
    "RoleNotImpersonable",
    "ServerNotAllowed",
    "TeleportError",
    "TeleportUnavailable",
    "UntrustedCertificate",
    "WrongAddress",
]


class Operation(StrEnum):
    """The requests a failure is reported for; the value is what logs and the request-error
    metrics show."""

    PING = "ping"
    JOIN = "join"
    EXPORT_HOST_CA = "export host CA"
    LOAD_CA = "load CA"
    CONNECT_TO_AUTH = "connect to Auth"
    REJOIN = "re-join"
    RENEW = "renew bot identity"
    ISSUE = "issue output identity"
    GET_ROLE = "get role"
    GET_HOST_CA = "get host CA"
    LIST_CLUSTERS = "list clusters"
    # The bot identity's Secret: Kubernetes requests, reported as Kubernetes failures.
    LOAD_IDENTITY = "load identity"
    SAVE_IDENTITY = "save identity"


# The operations that obtain the bot identity, its storage included.
BOT_IDENTITY_OPERATIONS = frozenset(
    {
        Operation.JOIN,
        Operation.REJOIN,
        Operation.RENEW,
        Operation.EXPORT_HOST_CA,
        Operation.LOAD_IDENTITY,
        Operation.SAVE_IDENTITY,
    }
)


class TeleportError(Exception):
    """A request to Teleport failed; ``operation`` names it for logs and metrics, ``summary``
    says in two or three words what kind of failure it is (readiness reasons lead with it).
    Each kind of failure below is a subclass, so callers catch the kinds they handle; its
    summary is given in its class line."""

    summary = "Teleport request failed"

    def __init_subclass__(cls, *, summary: str) -> None:
        super().__init_subclass__()
        cls.summary = summary

    def __init__(self, operation: Operation, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message


class ProxyUnreachable(TeleportError, summary="Teleport unreachable"):
    """Nothing answered at the address (refused, DNS, timeout): usually transient."""


class TeleportUnavailable(TeleportError, summary="Teleport unavailable"):
    """Teleport answered but could not serve the request now (5xx, UNAVAILABLE)."""


class WrongAddress(TeleportError, summary="wrong Teleport address"):
    """Something answered, but it is not a Teleport proxy or Auth Service."""


class UntrustedCertificate(TeleportError, summary="certificate not trusted"):
    """The server's certificate does not verify: never skipped, a CA must be configured."""


class JoinRejected(TeleportError, summary="join rejected"):
    """Teleport refused the join token or the service-account JWT; the message names the rule."""


class BotLocked(TeleportError, summary="bot locked"):
    """The bot or its instance is locked (for example after an older identity was reused)."""


class BotDeleted(TeleportError, summary="bot deleted"):
    """The bot's user no longer exists (the bot was deleted): nothing it holds renews again."""


class ServerNotAllowed(TeleportError, summary="proxy address not allowed by the admission policy"):
    """The proxy advertises an address the chart's admission policy does not allow in a
    secret's ``server``: every write would be refused, so none is attempted."""


class IdentityExpired(TeleportError, summary="bot identity expired"):
    """The stored bot identity has expired; the token join method cannot recover by itself."""


class RoleNotImpersonable(TeleportError, summary="roles not impersonable"):
    """The bot may not impersonate the roles it asked for."""


class LoadBalancerInTheWay(TeleportError, summary="TLS terminated before the proxy"):
    """A load balancer in front of the proxy terminates TLS, so the routes behind the proxy
    port (Auth, Kubernetes) are out of reach; a person must change the address or the balancer."""
