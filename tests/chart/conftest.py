"""Fixtures for the chart tests: one isolated helm, and every ci/ value set rendered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import CI_VALUES, Helm, Rendered


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def rendered_ci(helm: Helm) -> dict[str, Rendered]:
    """``helm template`` of every chart/ci/*-values.yaml, keyed by scenario (file name stem)."""
    return {scenario(path): helm.template([path]) for path in CI_VALUES}


def scenario(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")
