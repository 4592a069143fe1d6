"""Shared pytest fixtures: where the project's shared material lives."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (CI lays it there); a missing one is a failure, not a skip."""
    if not (SHARED / "refvectors").is_dir():
        pytest.fail(f"shared material not found at {SHARED}: clone the repo beside ../shared")
    return SHARED
