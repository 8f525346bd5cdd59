"""What can go wrong talking to Teleport, as a small exception tree.

Transport errors (sockets, TLS, HTTP statuses, gRPC codes) are mapped to these classes at the
boundary (``webapi.py``, ``auth.py``), so callers and logs never see a transport library's
exception types. Every message is a sentence that says what happened and what to do.
"""

from __future__ import annotations

__all__ = [
    "BotDeleted",
    "BotLocked",
    "IdentityExpired",
    "JoinRejected",
    "LoadBalancerInTheWay",
    "ProxyUnreachable",
    "RoleMissing",
    "RoleNotImpersonable",
    "ServerNotAllowed",
    "TeleportError",
    "TeleportUnavailable",
    "UntrustedCertificate",
    "WrongAddress",
]


# The operations (as errors name them) that obtain the bot identity, its storage included.
BOT_IDENTITY_OPERATIONS = frozenset(
    {"join", "re-join", "renew bot identity", "export host CA", "load identity", "save identity"}
)


class TeleportError(Exception):
    """A request to Teleport failed; ``operation`` names it for logs and metrics, ``summary``
    says in two or three words what kind of failure it is (readiness reasons lead with it)."""

    summary = "Teleport request failed"

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message


class ProxyUnreachable(TeleportError):
    """Nothing answered at the address (refused, DNS, timeout): usually transient."""

    summary = "Teleport unreachable"


class TeleportUnavailable(TeleportError):
    """Teleport answered but could not serve the request now (5xx, UNAVAILABLE)."""

    summary = "Teleport unavailable"


class WrongAddress(TeleportError):
    """Something answered, but it is not a Teleport proxy or Auth Service."""

    summary = "wrong Teleport address"


class UntrustedCertificate(TeleportError):
    """The server's certificate does not verify: never skipped, a CA must be configured."""

    summary = "certificate not trusted"


class JoinRejected(TeleportError):
    """Teleport refused the join token or the service-account JWT; the message names the rule."""

    summary = "join rejected"


class BotLocked(TeleportError):
    """The bot or its instance is locked (for example after an older identity was reused)."""

    summary = "bot locked"


class BotDeleted(TeleportError):
    """The bot's user no longer exists (the bot was deleted): nothing it holds renews again."""

    summary = "bot deleted"


class ServerNotAllowed(TeleportError):
    """The proxy advertises an address the chart's admission policy does not allow in a
    secret's ``server``: every write would be refused, so none is attempted."""

    summary = "proxy address not allowed by the admission policy"


class IdentityExpired(TeleportError):
    """The stored bot identity has expired; the token join method cannot recover by itself."""

    summary = "bot identity expired"


class RoleNotImpersonable(TeleportError):
    """The bot may not impersonate the roles it asked for."""

    summary = "roles not impersonable"


class RoleMissing(TeleportError):
    """A role the bot's identity or output asks for does not exist (deleted, or never created)."""

    summary = "role not found"


class LoadBalancerInTheWay(TeleportError):
    """A load balancer in front of the proxy terminates TLS, so the routes behind the proxy
    port (Auth, Kubernetes) are out of reach; a person must change the address or the balancer."""

    summary = "TLS terminated before the proxy"
