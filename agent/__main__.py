"""Allows `python -m agent`."""

from __future__ import annotations

from agent.commands.cli import main

raise SystemExit(main())
