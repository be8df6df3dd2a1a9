"""Shared pytest fixtures."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_sample():
    """The real data slice ../shared/real_sample (relative to the repository root); skips when absent."""
    path = Path(__file__).parents[2] / "shared" / "real_sample"
    if not path.is_dir():
        pytest.skip(f"real data sample not found at {path}")
    return path
