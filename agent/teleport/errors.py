"""What can go wrong talking to Teleport, as a small exception tree.

Transport errors (sockets, TLS, HTTP statuses, gRPC codes) are mapped to these classes at the
boundary (``webapi.py``, ``auth.py``), so callers and logs never see a transport library's
exception types. Every message is a sentence that says what happened and what to do.
``final`` says that retrying without a change by a person cannot help (a rejected token, a
locked bot); the daemon still retries with backoff, ``--oneshot`` and ``check`` stop.
"""

from __future__ import annotations

__all__ = [
    "BotDeleted",
    "BotLocked",
    "ClusterInvisible",
    "IdentityExpired",
    "JoinRejected",
    "ProxyUnreachable",
    "RoleNotImpersonable",
    "ServerNotAllowed",
    "TeleportError",
    "TeleportUnavailable",
    "UntrustedCertificate",
    "WrongAddress",
]


class TeleportError(Exception):
    """A request to Teleport failed; ``operation`` names it for logs and metrics, ``summary``
    says in two or three words what kind of failure it is (readiness reasons lead with it)."""

    final = False
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

    final = True
    summary = "wrong Teleport address"


class UntrustedCertificate(TeleportError):
    """The server's certificate does not verify: never skipped, a CA must be configured."""

    final = True
    summary = "certificate not trusted"


class JoinRejected(TeleportError):
    """Teleport refused the join token or the service-account JWT; the message names the rule."""

    final = True
    summary = "join rejected"


class BotLocked(TeleportError):
    """The bot or its instance is locked (for example after an older identity was reused)."""

    final = True
    summary = "bot locked"


class BotDeleted(TeleportError):
    """The bot's user no longer exists (the bot was deleted): nothing it holds renews again."""

    final = True
    summary = "bot deleted"


class ServerNotAllowed(TeleportError):
    """The proxy advertises an address the chart's admission policy does not allow in a
    secret's ``server``: every write would be refused, so none is attempted."""

    final = True
    summary = "proxy address not allowed by the admission policy"


class IdentityExpired(TeleportError):
    """The stored bot identity has expired; the token join method cannot recover by itself."""

    final = True
    summary = "bot identity expired"


class RoleNotImpersonable(TeleportError):
    """The bot may not impersonate the roles it asked for."""

    final = True
    summary = "roles not impersonable"


class ClusterInvisible(TeleportError):
    """The credential's roles do not allow this Kubernetes cluster (403/404 from the proxy)."""

    final = True
    summary = "cluster not visible"
