"""Verilator build of the engine + its co-simulation harness (a thin wrapper over sim.runner).

Uses `sim.runner.setup_verilator`, `build_root` and `LINT_WAIVERS`; the build folder is keyed by a
hash of the generated Verilog, the harness and the flags, and guarded by a file lock, exactly like
the unit builds. The clock runs in the Verilog harness (`--timing`), so cocotb only waits for
handshake edges.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hw.engine.params import EngineParams
from hw.engine.top import StreamEngine
from model.numerics import NitroError
from sim.runner import (
    lean_verilator,
    LINT_WAIVERS, REPO, build_locked, check_results, ignored_root, module_tests, setup_verilator,
    without_src,
)

HARNESS = Path(__file__).with_name("engine_tb.sv")
MEMORY_MODEL = Path(__file__).parents[1] / "axi_mem.sv"
MEM_WORDS = 1 << 23  # the memory model: 64 MiB (as 64-bit words; the model holds bus words)
# -CFLAGS -O3: the model's C++ is otherwise compiled -Os (verilated.mk's OPT_FAST); -O3 runs the
# engine ~1.6x faster for a few seconds more of compile
BUILD_ARGS = [*LINT_WAIVERS, "-O3", "--timing", "-Wno-fatal", "--x-assign", "fast",
              "--x-initial", "fast", "-CFLAGS", "-O3"]
ENGINE_BUILD_ROOT = REPO / "build" / "engine"  # a root of its own: unit test runs may clear build/hw

_ZERO_INIT = re.compile(r"\n  initial begin\n(?:    [\\\w$.]+ ?\[\d+\] = \d+'h0+;\n)+  end")


def engine_verilog(params: EngineParams) -> str:
    """Amaranth -> Verilog of the engine, without the all-zero memory initialisers (Verilator and
    the FPGA both start memories at zero; the initialisers only slow the C++ compile)."""
    from amaranth.back import verilog

    text = verilog.convert(StreamEngine(params), name="engine")
    return _ZERO_INIT.sub("", text)


def _build_args(waves: bool) -> list[str]:
    """Verilator flags; with waves the model records every signal to an FST file (slower)."""
    return BUILD_ARGS + (["--trace-fst", "--trace-structs"] if waves else [])


def _source_key(p: EngineParams, hparams: dict, waves: bool = False) -> str:
    import amaranth

    h = hashlib.sha256()
    files = sorted((REPO / "hw").rglob("*.py")) + [REPO / "model" / f for f in
                                                   ("divider.py", "layers.py", "numerics.py")]
    for f in files + [HARNESS, MEMORY_MODEL, Path(__file__)]:
        h.update(f.name.encode() + f.read_bytes())
    h.update(json.dumps([repr(p), hparams, _build_args(waves), amaranth.__version__]).encode())
    return h.hexdigest()[:16]


def _harness_params(p: EngineParams) -> dict:
    return {"WORDS": MEM_WORDS * 64 // p.bus_bits, "DATA_W": p.bus_bits}


def source_link(p: EngineParams, waves: bool = False) -> Path:
    """The file naming the build folder of the current sources' engine (the fast path)."""
    return ENGINE_BUILD_ROOT / f"src-{_source_key(p, _harness_params(p), waves)}"


class SimulationFailed(NitroError):
    """The simulation itself failed (a cocotb test, a timeout, no result): not a limit of what
    the user gave, which the caller checked before it started."""


@dataclass
class EngineBuild:
    params: EngineParams
    build_dir: Path
    verilog: Path
    seconds: float  # build time (0 when cached)
    waves: bool = False  # records an FST of every run


def build_engine(params: EngineParams | None = None, waves: bool = False) -> EngineBuild:
    """Generate and Verilate the engine (cached by content hash; concurrent callers wait)."""
    p = params or EngineParams()
    setup_verilator()
    hparams = _harness_params(p)
    # Fast path: the Python sources that generate the design are unchanged since a finished
    # build (Verilog generation alone takes ~10 s).
    link = source_link(p, waves)
    name = link.read_text().strip() if link.exists() else ""
    if name and "/" not in name and (ENGINE_BUILD_ROOT / name / "tb").exists():  # a folder name only:
        bdir = ENGINE_BUILD_ROOT / name  # a copied checkout must not reach into the original
        return EngineBuild(p, bdir, bdir / "engine.v", 0.0, waves)
    v_text = engine_verilog(p)
    key = hashlib.sha256(
        (without_src(v_text) + HARNESS.read_text() + MEMORY_MODEL.read_text()
         + json.dumps([_build_args(waves), hparams])).encode()
    ).hexdigest()[:12]
    bdir = ignored_root(ENGINE_BUILD_ROOT) / f"engine-{key}"
    t0 = time.perf_counter()
    v_file = bdir / "engine.v"
    built = build_locked(bdir, {v_file.name: v_text, "axi_mem.sv": MEMORY_MODEL.read_text(),
                                "engine_tb.sv": HARNESS.read_text()}, "tb", lean_verilator(),
                         _build_args(waves), hparams, ("1ns", "1ps"), waves)
    (bdir / "params.json").write_text(json.dumps(p.__dict__))
    link.write_text(bdir.name)
    return EngineBuild(p, bdir, v_file, time.perf_counter() - t0 if built else 0.0, waves)


def remove_run_folder(test_dir: Path) -> None:
    """A passed run's test folder and log in the build folder: one per process id, they would
    pile up (a failed run's stay, for its debugging)."""
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.with_name(f"{test_dir.name}.log").unlink(missing_ok=True)


def run_engine_test(build: EngineBuild, test_module: str, test_dir: Path, job,
                    log_file: Path | None = None) -> None:
    """Run a cocotb module against the engine build (SystemExit if a cocotb test fails)."""
    from cocotb_tools.runner import get_runner

    setup_verilator()
    if test_dir.exists():
        shutil.rmtree(test_dir)
    test_dir.mkdir(parents=True)
    job.save(test_dir)  # the typed job the cocotb module reads (e.g. cosim.CosimRun)
    check_results(get_runner("verilator").test(
        test_module=test_module, hdl_toplevel="tb", hdl_toplevel_lang="verilog",
        build_dir=build.build_dir, test_dir=test_dir, log_file=log_file, waves=build.waves,
    ), module_tests(test_module))
