"""What a benchmark record was measured on: the commit, the machine, the date."""
from __future__ import annotations

import os
import platform
import subprocess
import time

from model.paths import REPO


def commit() -> str:
    """The checkout's commit, "-dirty" when files outside benchmarks/ (the records themselves)
    differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--", ".", ":(exclude)benchmarks") else "")


def host() -> str:
    """The machine: architecture, system and CPU count."""
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores"


def today() -> str:
    return time.strftime("%Y-%m-%d")
