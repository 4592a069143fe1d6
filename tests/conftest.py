"""Shared pytest fixtures: where the project's shared material lives."""
from pathlib import Path

import pytest

from model.paths import REPO, SHARED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (CI lays it there); a missing one is a failure, not a skip."""
    if not (SHARED / "refvectors").is_dir():
        pytest.fail(f"shared material not found at {SHARED}: clone the repo beside ../shared")
    return SHARED


@pytest.fixture
def tampered_mlp_set(shared_dir, tmp_path):
    """A copy of the official `mlp` vector set in tmp_path with step-2 arrays changed:
    tamper({array: (index, delta), None (dropped) or a function of the array (its replacement),
    ...}) -> the folder."""
    import shutil

    import numpy as np

    def tamper(changes: dict) -> Path:
        src = shared_dir / "refvectors"
        for f in src.glob("mlp_*"):
            if not f.name.startswith("mlp_warm"):
                shutil.copy(f, tmp_path / f.name)
        with np.load(src / "mlp_step2.npz") as f:
            arrays = {k: f[k] for k in f.files}
        for name, change in changes.items():
            if change is None:
                del arrays[name]
            elif callable(change):
                arrays[name] = change(arrays[name])
            else:
                arrays[name][change[0]] += change[1]
        np.savez(tmp_path / "mlp_step2.npz", **arrays)
        return tmp_path

    return tamper


def pytest_sessionstart(session) -> None:
    """Vector counts and coverage are per session: drop the previous session's."""
    if not hasattr(session.config, "workerinput"):  # the xdist controller (or a plain run) only
        from sim.coverage import clear_runs
        from sim.runner import coverage_enabled

        (REPO / "build" / "hw" / "vector_counts.json").unlink(missing_ok=True)
        if coverage_enabled():
            clear_runs()


def pytest_terminal_summary(terminalreporter) -> None:
    """Vectors checked per hardware unit (written by sim.testing.report), shown even with -q."""
    import json

    counts = REPO / "build" / "hw" / "vector_counts.json"
    if not counts.exists():
        return
    data = json.loads(counts.read_text())
    terminalreporter.write_sep("-", "golden-model vectors checked per hardware unit")
    for unit, c in sorted(data.items()):
        terminalreporter.write_line(f"{unit:14s} {sum(c.values()):>10,d}  " + ", ".join(f"{k}: {v:,d}" for k, v in c.items()))
