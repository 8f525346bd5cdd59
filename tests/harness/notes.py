"""The Teleport resources the chart's install notes tell the administrator to save and create."""

from __future__ import annotations

BEGIN = "# ---- teleport-argocd.yaml: from here ----"
END = "# ---- teleport-argocd.yaml: to here ----"


def teleport_resources(notes: str) -> str:
    """The text between the notes' two markers: exactly what the user saves as
    teleport-argocd.yaml (YAML and YAML comments only, no prose)."""
    if notes.count(BEGIN) != 1 or notes.count(END) != 1:
        raise AssertionError(f"the notes must hold one {BEGIN!r} and one {END!r}:\n{notes}")
    return notes.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
