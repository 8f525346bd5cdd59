"""Allows `python -m agent`."""

from __future__ import annotations

from agent.cli import main

raise SystemExit(main())
