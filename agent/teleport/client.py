"""The Teleport client the daemon uses: the proxy's settings, the bot identity, the output
credential and the cluster listing (``TeleportSource`` in ``agent/runtime.py``).

Bot identity lifecycle (TELEPORT.md §5):

* ``token`` join: the token works once and the certificates are renewable. Every renewal
  raises the generation, and presenting an older one locks the bot, so a new identity is
  saved to storage *before* it is used, and renewal always starts from the newest one. A
  restarted agent continues from the stored identity.
* ``kubernetes`` join: the service-account JWT (re-read from ``KUBERNETES_TOKEN_PATH`` at
  every join) is reusable, certificates are not renewable. While the bot certificate is
  valid the agent re-joins over the authenticated Auth connection, which keeps the bot
  instance; after it expired, it joins afresh through the web API (a new instance).

The output identity (§6) impersonates the roles of the bot's role, routed to this cluster and
to no Kubernetes cluster, so one certificate serves every cluster. Clusters are listed with
it (§3), because Teleport filters the listing by the caller's roles.

``read_only`` (for ``plan`` and ``check``) never renews a stored identity nor spends a join
token: a running agent may share the storage, and two renewers would lock the bot.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from agent.config import AgentConfig
from agent.logs import logger
from agent.schedule import utcnow
from agent.teleport import keys
from agent.teleport.auth import AuthClient
from agent.teleport.errors import (
    BotLocked,
    IdentityExpired,
    JoinRejected,
    LoadBalancerInTheWay,
    Operation,
    RoleNotImpersonable,
    ServerNotAllowed,
    TeleportError,
    UntrustedCertificate,
)
from agent.teleport.lifecycle import BotStep, next_bot_step
from agent.teleport.model import (
    BotIdentity,
    Credential,
    IssuedCerts,
    KubeCluster,
    ProxySettings,
    split_pem_certificates,
)
from agent.teleport.storage import IdentityStore, MemoryStore
from agent.teleport.webapi import REVERSE_TUNNEL_ALPN, WebClient, register_request

__all__ = ["DEFAULT_KUBERNETES_TOKEN_PATH", "TeleportClient"]

DEFAULT_KUBERNETES_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
BOT_TTL_CAP = dt.timedelta(hours=24)
# The listing credential is reissued when less than this is left.
LISTING_MARGIN = dt.timedelta(minutes=2)
# An output credential the listing had to issue is handed to the next issue_credential for
# the same TTL if no older than this: at start-up (and whenever the listing needs a new one)
# the renewal that follows in the same cycle then costs no second key and round trip.
SPARE_MAX_AGE = dt.timedelta(seconds=30)

T = TypeVar("T")


class TeleportClient:
    """Implements ``TeleportSource`` for one agent configuration."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: IdentityStore | None = None,
        read_only: bool = False,
        clock: Callable[[], dt.datetime] = utcnow,
        environ: dict[str, str] | None = None,
    ) -> None:
        self._config = config
        self._store = store or MemoryStore()
        self._read_only = read_only
        self._clock = clock
        self._env = os.environ if environ is None else environ
        self._addr = config.proxy_server
        self._web = WebClient(self._addr, ca_path=config.proxy_ca_path or None)
        self._proxy: ProxySettings | None = None
        # The proxy itself answered the load balancer test handshake (TELEPORT.md section 1a).
        self._proxy_answers_tls = False
        self._host_ca: tuple[bytes, ...] = ()
        self._bot: BotIdentity | None = None
        self._unsaved: BotIdentity | None = None  # issued, not yet persisted: not usable
        self._loaded = False
        self._listing: Credential | None = None
        # When the listing issued ``_listing`` for itself (not yet handed out), else None.
        self._listing_spare_since: dt.datetime | None = None
        ttls = [config.credential_ttl] + [
            s.credential_ttl for s in config.services if s.credential_ttl is not None
        ]
        self._bot_ttl = min(max(ttls), BOT_TTL_CAP)

    # -- TeleportSource ---------------------------------------------------------------------

    def proxy_settings(self) -> ProxySettings:
        proxy = self._web.find()
        if proxy.tls_routing and not self._proxy_answers_tls:
            # Once per process: a load balancer is not added in front of a proxy at run time
            # without the address changing.
            terminated = self._web.tls_terminated_before_proxy()
            if terminated is not None:
                raise LoadBalancerInTheWay(
                    Operation.PING,
                    f"{self._addr} answers through a load balancer that terminates TLS (a test "
                    f"handshake offering the ALPN {REVERSE_TUNNEL_ALPN} got {terminated}), so "
                    "the Auth Service and the Kubernetes clusters behind the proxy port are out "
                    "of reach, for the agent and for Argo CD, which needs mutual TLS through "
                    "the proxy. Put the proxy behind a TCP (layer 4) load balancer or TLS "
                    "passthrough, or set proxy_server (chart value teleportProxyAddress) to an "
                    "address that reaches the proxy without TLS termination. The agent does not "
                    "tunnel through Teleport's connection upgrade",
                )
            self._proxy_answers_tls = True
        self._proxy = proxy
        self._check_server_allowed(proxy)
        return self._proxy

    def _check_server_allowed(self, proxy: ProxySettings) -> None:
        """Every secret's ``server`` starts with ``https://<kube address>/v1/teleport/``; the
        chart's admission policy accepts only ``allowed_server_prefix`` there. A mismatch
        (the proxy advertises another public address) would have every write refused, so it
        is one clear error instead."""
        allowed = self._config.allowed_server_prefix
        if not allowed or not proxy.kube_addr:
            return
        prefix = f"https://{proxy.kube_addr}/v1/teleport/"
        if prefix != allowed:
            raise ServerNotAllowed(
                Operation.PING,
                f"Teleport advertises {proxy.kube_addr} as the proxy's public address, so "
                f"the secrets' server would start with {prefix}, but the chart's admission "
                f"policy allows only {allowed}. Set the chart value "
                f"admissionPolicy.proxyPublicAddress to {proxy.kube_addr} (or fix the proxy's "
                "public_addr in Teleport); nothing is written until they match",
            )

    def issue_credential(self, ttl: dt.timedelta) -> Credential:
        """Join or renew the bot as needed, then issue an output credential for ``ttl``."""
        since, self._listing_spare_since = self._listing_spare_since, None
        spare = self._listing
        if (
            spare is not None
            and since is not None
            and ttl == self._config.credential_ttl
            and self._clock() - since < SPARE_MAX_AGE
        ):
            return spare
        bot = self.bot_identity()
        credential = self._run(lambda: self._issue_output(bot, ttl))
        self._listing = credential
        return credential

    def list_clusters(self) -> list[KubeCluster]:
        now = self._clock()
        if self._listing is None or self._listing.expires - now < LISTING_MARGIN:
            bot = self.bot_identity()
            self._listing = self._run(lambda: self._issue_output(bot, self._config.credential_ttl))
            self._listing_spare_since = now
        credential = self._listing
        return self._run(lambda: self._list(credential))

    # -- the bot identity -------------------------------------------------------------------

    def bot_identity(self) -> BotIdentity:
        """The current bot identity: joined, renewed or re-joined as the rules require."""
        proxy = self._proxy or self.proxy_settings()
        now = self._clock()
        if self._unsaved is not None:
            self._persist(self._unsaved)  # never use an identity that a restart would lose
        if not self._host_ca:
            self._host_ca = self._web.host_ca()
        if not self._loaded:
            self._loaded = True
            stored = self._store.load()
            if stored is not None:
                self._bot = stored
                logger.bind(**stored.describe()).info(
                    "bot identity loaded", storage=self._store.describe()
                )
        bot = self._bot
        if bot is not None and bot.cluster_name and bot.cluster_name != proxy.cluster_name:
            raise TeleportError(
                Operation.JOIN,
                f"the stored identity is for the cluster {bot.cluster_name!r}, the proxy serves "
                f"{proxy.cluster_name!r}; delete {self._store.describe()} or fix proxy_server",
            )
        step = next_bot_step(
            bot,
            now=now,
            join_method=self._config.onboarding.join_method,
            read_only=self._read_only,
            storage=self._store.describe(),
        )
        if step is BotStep.REUSE and bot is not None:
            return bot
        if step is BotStep.JOIN or bot is None:
            return self._keep(self._join(bot, proxy))
        if step is BotStep.RENEW:
            try:
                return self._keep(self._run(lambda: self._renew(bot, proxy)))
            except BotLocked as exc:
                return self._keep(self._join_after_lock(proxy, exc))
        return self._keep(self._rejoin_or_join(bot, proxy))

    def _join(self, bot: BotIdentity | None, proxy: ProxySettings) -> BotIdentity:
        """A join through the web API; with the token method, a refused token after the
        identity expired is reported as the expiry it is."""
        if bot is not None:
            logger.bind(**bot.describe()).warning("bot identity expired; joining again")
        try:
            return self._join_web(proxy)
        except JoinRejected as exc:
            if bot is not None and self._config.onboarding.join_method == "token":
                raise IdentityExpired(
                    Operation.JOIN,
                    f"the bot identity expired at {bot.expires.isoformat()} and the join "
                    f"token was refused ({exc.message}). Create a new join token for the "
                    "bot and put it into the token Secret",
                ) from None
            raise

    def _rejoin_or_join(self, bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        """Re-join over Auth (keeps the bot instance); a fresh join if Auth says the identity
        expired meanwhile."""
        try:
            return self._run(lambda: self._rejoin(bot, proxy))
        except IdentityExpired:
            return self._join_web(proxy)
        except JoinRejected as exc:
            token = self._config.onboarding.token
            raise JoinRejected(
                exc.operation,
                f"{exc.message}. The bot identity stays valid until "
                f"{bot.expires.isoformat()}; check that the join token {token!r} still "
                f"exists (tctl get token/{token}) and allows this service account",
            ) from None

    def _join_after_lock(self, proxy: ProxySettings, locked: BotLocked) -> BotIdentity:
        """A locked bot instance never renews again; with the token method an administrator
        recovers it by putting a new join token into the token Secret. So join with whatever
        the token file holds now: a new bot instance. The spent token is refused (harmlessly)
        and the lock is reported as it was."""
        try:
            return self._join_web(proxy)
        except JoinRejected:
            raise locked from None

    def _keep(self, identity: BotIdentity) -> BotIdentity:
        """Adopt a new identity: saved first, so a crash never leaves only the older one."""
        self._unsaved = identity
        self._persist(identity)
        logger.bind(**identity.describe()).info("bot identity issued")
        return identity

    def _persist(self, identity: BotIdentity) -> None:
        self._store.save(identity)
        self._unsaved = None
        self._bot = identity
        self._listing = None
        self._listing_spare_since = None

    def _join_web(self, proxy: ProxySettings) -> BotIdentity:
        """A join through ``/webapi/host/credentials``: always a new bot instance."""
        onboarding = self._config.onboarding
        key = keys.generate_key(proxy.signature_algorithm_suite)
        id_token = None
        token = onboarding.token
        if onboarding.join_method == "token":
            token = self._read_secret_token()
        else:
            id_token = self._read_service_account_token()
        body = register_request(
            token=token,
            public_tls_key_pem=keys.tls_public_key_pem(key),
            public_ssh_key=keys.ssh_public_key(key),
            expires=self._clock() + self._bot_ttl,
            id_token=id_token,
        )
        certs = self._web.register(body)
        return self._identity(certs, key)

    def _identity(self, certs: IssuedCerts, key: keys.PrivateKey) -> BotIdentity:
        host_ca = self._host_ca or tuple(
            c for pem in certs.tls_ca_certs_pem for c in split_pem_certificates(pem)
        )
        return BotIdentity.from_pem(certs.tls_cert_pem, keys.private_key_pem(key), host_ca)

    def _read_secret_token(self) -> str:
        token = self._config.onboarding.token
        if not token.startswith("/"):
            return token
        try:
            return Path(token).read_text().strip()
        except OSError as exc:
            raise JoinRejected(
                Operation.JOIN, f"cannot read the join token file {token}: {exc.strerror}"
            ) from None

    def _read_service_account_token(self) -> str:
        # Re-read at every join: the kubelet rotates the projected token.
        path = self._env.get("KUBERNETES_TOKEN_PATH") or DEFAULT_KUBERNETES_TOKEN_PATH
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise JoinRejected(
                Operation.JOIN,
                f"cannot read the service-account token {path} ({exc.strerror}): the chart "
                "mounts a projected token there (KUBERNETES_TOKEN_PATH)",
            ) from None
        if not token:
            raise JoinRejected(Operation.JOIN, f"the service-account token file {path} is empty")
        return token

    # -- gRPC steps -------------------------------------------------------------------------

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def main() -> T:
            return await make()

        try:
            return asyncio.run(main())
        except UntrustedCertificate:
            if not self._refresh_host_ca():
                raise
            return asyncio.run(main())

    def _refresh_host_ca(self) -> bool:
        """Auth's certificate did not verify against the Host CA held: Teleport may have
        rotated it while the agent ran. Read it again from the proxy, trusted as at start
        (the web certificate); true when it changed, so the call is worth one more try."""
        fresh = self._web.host_ca()
        if set(fresh) == set(self._host_ca):
            return False
        logger.info(
            "Host CA changed in Teleport; trusting the current one", certificates=len(fresh)
        )
        self._host_ca = fresh
        return True

    def _auth(self, cert_pem: bytes, key_pem: bytes) -> AuthClient:
        proxy = self._proxy
        assert proxy is not None
        host_ca = self._host_ca or (self._bot.host_ca_pem if self._bot else ())
        return AuthClient(
            self._addr,
            cluster_name=proxy.cluster_name,
            host_ca_pem=host_ca,
            cert_pem=cert_pem,
            key_pem=key_pem,
        )

    async def _renew(self, bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        key = keys.generate_key(proxy.signature_algorithm_suite)
        async with self._auth(bot.cert_pem, bot.key_pem) as auth:
            certs = await auth.generate_user_certs(
                username=bot.username,
                expires=self._clock() + self._bot_ttl,
                tls_public_key=keys.tls_public_key_pem(key),
                ssh_public_key=keys.ssh_public_key(key),
            )
        return self._identity(certs, key)

    async def _rejoin(self, bot: BotIdentity, proxy: ProxySettings) -> BotIdentity:
        key = keys.generate_key(proxy.signature_algorithm_suite)
        async with self._auth(bot.cert_pem, bot.key_pem) as auth:
            certs = await auth.rejoin(
                token=self._config.onboarding.token,
                id_token=self._read_service_account_token(),
                tls_public_key=keys.tls_public_key_pem(key),
                ssh_public_key=keys.ssh_public_key(key),
                expires=self._clock() + self._bot_ttl,
            )
        return self._identity(certs, key)

    async def _issue_output(self, bot: BotIdentity, ttl: dt.timedelta) -> Credential:
        proxy = self._proxy
        assert proxy is not None
        bot_name = bot.bot_name or bot.username.removeprefix("bot-")
        key = keys.generate_key(proxy.signature_algorithm_suite)
        async with self._auth(bot.cert_pem, bot.key_pem) as auth:
            roles = await auth.impersonable_roles(f"bot-{bot_name}")
            if not roles:
                raise RoleNotImpersonable(
                    Operation.ISSUE,
                    f"the bot {bot_name!r} has no roles to impersonate: add the role with the "
                    "Kubernetes access to the bot's spec.roles (see the chart's install notes)",
                )
            certs = await auth.generate_user_certs(
                username=bot.username,
                expires=self._clock() + ttl,
                tls_public_key=keys.tls_public_key_pem(key),
                ssh_public_key=keys.ssh_public_key(key),
                route_to_cluster=proxy.cluster_name,
                role_requests=roles,
            )
            host_ca = split_pem_certificates(await auth.host_ca())
        if host_ca:
            # Auth's own answer over the verified connection: during a rotation it carries the
            # new CA before Auth's certificate is signed by it, so the next connection trusts it.
            self._host_ca = host_ca
        return Credential.from_pem(
            certs.tls_cert_pem, keys.private_key_pem(key), host_ca or self._host_ca, bot_name
        )

    async def _list(self, credential: Credential) -> list[KubeCluster]:
        async with self._auth(credential.cert_pem, credential.key_pem) as auth:
            return await auth.list_kube_clusters()
