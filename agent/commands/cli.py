"""Command line entry point: ``teleport-argocd-agent`` (also ``python -m agent``).

Commands: ``validate``, ``start`` (the daemon; ``--oneshot`` for one cycle), ``plan`` (what
would be written, nothing is) and ``check`` (is everything in place, including every secret's
credential). Exit codes: 0 success; 1 a cycle or check incomplete (a cluster not written, a
secret whose credential fails); 2 invalid configuration; 3 Teleport refused or could not be
reached (the message says which and what to do); 4 the Kubernetes API could not be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Literal

from agent import __version__
from agent.commands.exitcodes import EXIT_CONFIG, EXIT_KUBERNETES, EXIT_OK
from agent.config import AgentConfig, ConfigError, format_duration, load_config
from agent.logs import configure_logging, logger
from agent.schedule import utcnow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teleport-argocd-agent",
        description="Writes Argo CD cluster secrets for Teleport-protected Kubernetes clusters.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help="check a config file and print what it configures",
        description="Validate the config file; exit 2 with one line per problem if it is invalid.",
    )
    validate.add_argument("-c", "--config", required=True, help="path of the agent config file")
    start = commands.add_parser(
        "start",
        help="run the agent: join Teleport and keep the Argo CD cluster secrets current",
        description="Run the daemon (or one cycle with --oneshot).",
    )
    start.add_argument(
        "--oneshot",
        action="store_true",
        help="one full cycle, then exit: 0 only if every selected cluster was written",
    )
    plan = commands.add_parser(
        "plan",
        help="show what would be created, updated and pruned; writes nothing",
        description="Join, list clusters and compare with the live secrets; no writes.",
    )
    check = commands.add_parser(
        "check",
        help="check config, proxy, join, listing and every secret's credential",
        description="A table of checks; exits non-zero if any fails.",
    )
    for command in (start, plan, check):
        command.add_argument("-c", "--config", required=True, help="path of the agent config file")
        command.add_argument("--log-format", choices=["text", "json"], default="text")
        command.add_argument("--log-level", default="", help="debug, info (default), warning")
        command.add_argument(
            "--log-libraries",
            action="store_true",
            help="with --log-level debug, also the libraries' debug lines (HTTP/2, gRPC, urllib3)",
        )
    return parser


def describe(config: AgentConfig) -> str:
    """A short human summary of a valid configuration (no secrets)."""
    lines = [
        f"Teleport: proxy {config.proxy_server}, join method {config.onboarding.join_method}, "
        f"credentials {format_duration(config.credential_ttl)} renewed every "
        f"{format_duration(config.renewal_interval)}",
    ]
    for service in config.services:
        selectors = "; ".join(s.describe() for s in service.selectors)
        extras = []
        if service.project:
            extras.append(f"project {service.project}")
        if service.namespaces:
            extras.append(f"namespaces {','.join(service.namespaces)}")
        if service.prune:
            extras.append("prune")
        lines.append(
            f"service {service.resolved_name()}: {selectors} -> secrets "
            f"{service.resolved_namespace()}/{service.secret_name_prefix}.<hash>"
            + (f" ({', '.join(extras)})" if extras else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "validate":
        print(describe(config))
        return EXIT_OK
    fmt: Literal["text", "json"] = args.log_format
    configure_logging(
        args.log_level or ("debug" if config.debug else "info"), fmt, libraries=args.log_libraries
    )
    for warning in config.warnings():
        logger.warning(warning)
    # The Teleport and Kubernetes clients load only for the commands that use them.
    from agent.commands import check, plan, start  # noqa: PLC0415
    from agent.commands.clients import KubernetesUnavailable  # noqa: PLC0415
    from agent.kubeapi import ApiError  # noqa: PLC0415

    try:
        if args.command == "start":
            return start.run(config, oneshot=args.oneshot)
        if args.command == "plan":
            return plan.run(config, now=utcnow())
        return check.run(config)
    except (KubernetesUnavailable, ApiError) as exc:
        # No credentials, or the bot identity's Secret could not be read or written.
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_KUBERNETES
