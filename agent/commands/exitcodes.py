"""The command line's exit codes, returned by ``cli`` and by each command."""

from __future__ import annotations

__all__ = ["EXIT_CONFIG", "EXIT_INCOMPLETE", "EXIT_KUBERNETES", "EXIT_OK", "EXIT_TELEPORT"]

EXIT_OK = 0
# A cycle or check incomplete: a cluster not written, a secret whose credential fails.
EXIT_INCOMPLETE = 1
EXIT_CONFIG = 2
# Teleport refused or could not be reached (the message says which and what to do).
EXIT_TELEPORT = 3
# The Kubernetes API could not be used.
EXIT_KUBERNETES = 4
