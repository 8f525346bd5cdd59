"""Command line entry point: ``teleport-argocd-agent`` (also ``python -m agent``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__
from agent.config import AgentConfig, ConfigError, format_duration, load_config

EXIT_CONFIG = 2


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
    return parser


def describe(config: AgentConfig) -> str:
    """A short human summary of a valid configuration (no secrets)."""
    target = f"proxy {config.proxy_server}" if config.proxy_server else f"auth {config.auth_server}"
    lines = [
        f"Teleport: {target}, join method {config.onboarding.join_method}, "
        f"credentials {format_duration(config.credential_ttl)} renewed every "
        f"{format_duration(config.renewal_interval)}",
    ]
    for index, service in enumerate(config.services):
        selectors = "; ".join(s.describe() for s in service.selectors)
        extras = []
        if service.project:
            extras.append(f"project {service.project}")
        if service.namespaces:
            extras.append(f"namespaces {','.join(service.namespaces)}")
        if service.prune:
            extras.append("prune")
        lines.append(
            f"service {config.service_name(index)}: {selectors} -> secrets "
            f"{service.resolved_namespace()}/{service.secret_name_prefix}.<hash>"
            + (f" ({', '.join(extras)})" if extras else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "validate":
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_CONFIG
        print(describe(config))
        return 0
    parser.print_help()
    return 0
