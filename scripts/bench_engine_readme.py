"""benchmarks/engine/README.md, generated from the records (`write_readme`; every `bench_engine`
mode ends with it)."""
from __future__ import annotations

import json
from pathlib import Path

from hw.engine.memory_model import DDR3_TEXT, MemoryModel
from hw.engine.params import CNN_WEIGHT_BITS, MLP_WEIGHT_BITS
from model.fileio import write_atomic
from scripts.engine_records import (
    CNN_RUNS, LONG, LONG_SEGMENTS, LONG_STEPS, OFFICIAL_SETS, OUT, PAPER_CNNS, TRAINED, VGG, VGG_RTL_BATCH, W24,
    cnn_file, conv_gemms, cosim_file, cosim_runs, long_files, synth_name, trained_file, w24_file,
    widths_file,
)


def _floorplan_lines(fp: dict, png: str) -> list[str]:
    """Where the units landed (sim.engine.floorplan): cells and spread per unit, the unit pairs
    with the most long connections."""
    lines = [f"Where nextpnr put each unit (`{png}`; spread: the tiles between the 5th and 95th "
             f"percentile of its cells, on a {fp['die_tiles'][0]} x {fp['die_tiles'][1]}-tile die), "
             f"and the unit pairs with the most of the {fp['long_connections']:,} connections of at "
             f"least {fp['long_tiles']} tiles:", "",
             "| unit | cells | spread x | spread y |", "|---|---:|---:|---:|"]
    lines += [f"| {u} | {v['cells']} | {v['spread_tiles'][0]:.0f} | {v['spread_tiles'][1]:.0f} |"
              for u, v in list(fp["units"].items())[:12]]
    lines += ["", "| from | to | connections >= " + str(fp["long_tiles"]) + " tiles | longest |",
              "|---|---|---:|---:|"]
    lines += [f"| {p['from']} | {p['to']} | {p['connections']} | {p['longest_tiles']} |"
              for p in fp["long_by_unit_pair"][:10]]
    return lines + [""]


def _pinned_record(seed: int, speed: int) -> dict | None:
    """The recorded route of the engine with its pins for this seed and speed grade, if any."""
    f = OUT / f"{synth_name(speed)}_seed{seed}.json"
    return json.loads(f.read_text()) if f.exists() else None


def _pinless_lines() -> list[str]:
    """The pinless timing probe beside the engine's routed seeds."""
    recs = [json.loads(f.read_text()) for f in sorted(OUT.glob("routing_pinless_speed*_seed*.json"))]
    if not recs:
        return []
    lines = ["## routing_pinless_speed<G>_seed<K>.json: the engine without its pin ring (timing probe)", "",
             "The same engine with its AXI ports inside the chip, as in an SoC "
             "(`sim.engine.synth.EnginePinlessTop`: each channel's inputs from a shift register, its "
             "outputs folded by registered XORs into one pin), placed and routed with the flow's "
             "options. Against the seeds of synth.json (the 360 AXI pins), it shows how much of the "
             "Fmax the pin ring costs.", "",
             "| speed | seed | Fmax (MHz) | with the pins | critical path | late register inputs at 150 MHz "
             "(with the pins) | place and route |", "|---:|---:|---:|---:|---|---:|---:|"]
    for r in recs:
        pinned = _pinned_record(r["seed"], r["speed"])
        same = pinned is not None and pinned["verilog_sha256"] == r["engine_verilog_sha256"]
        lines.append(f"| {r['speed']} | {r['seed']} | {r['fmax_mhz']} | {pinned['fmax_mhz'] if same else '-'} | "
                     f"{r['critical_path']} | {r['late_inputs_at_150mhz']} "
                     f"({pinned['late_endpoints']['count'] if same else '-'}) | {r['nextpnr_minutes']} min |")
    lines += ["", "Worst groups of late register inputs: " + "; ".join(
        f"seed {r['seed']} (speed {r['speed']}): " + (", ".join(r["worst_groups"][:4]) or "none") for r in recs), ""]
    return lines


def resource_table(util: dict) -> list[str]:
    return (["| resource | used | available | % |", "|---|---:|---:|---:|"]
            + [f"| {k} | {v['used']} | {v['available']} | {v['percent']} |" for k, v in util.items()])


def _cosim_lines(f: Path, per_phase: bool = False) -> list[str]:
    """A recorded co-simulation in the README: bit-exactness, cycles, utilization, inference
    (and per phase: the convolutions per layer)."""
    from sim.engine.cosim import units_text, warm_text
    r = json.loads(f.read_text())
    u, p = r["units"], r["params"]
    t = r.get("test", {})
    first = r.get("start_step", 0)
    steps = (f"steps {first}..{first + r['steps_run'] - 1} (the golden model trained the {first} "
             "before alone)" if first else f"{r['steps_run']} steps")
    lines = [f"## {f.name}", "",
             f"- {r['network']} batch {r['batch']}, {steps}, memory {MemoryModel(**r['memory']).name}, "
             f"{p['bus_bits']}-bit port, int{p['weight_bits']} weights, bit-identical after every "
             f"step: **{r['ok']}**; {r['tiles']} "
             f"tiles in {r.get('runs', r['tiles'])} runs, {r['program_commands']} program "
             "commands per step",
             f"- cycles per step: **{r['cycles_per_step']:.0f}** = {units_text(u)}; predicted "
             f"{r['predicted']['cycles_per_step']:.0f} ({100 * r['predicted']['error']:+.2f}%)",
             f"- useful-MAC utilization **{100 * r['mac_util']:.1f}%** of the step "
             f"({100 * r['gemm_mac_util']:.1f}% of the core's cycles in GEMMs, END commands "
             f"excluded)", f"- {warm_text(r)}"]
    if t:
        lines.append(f"- inference on {t['images']} test images: engine accuracy "
                     f"{100 * t['engine_acc']:.2f}%, golden model {100 * t['golden_acc']:.2f}%, "
                     f"predictions identical: {t['identical']}")
    if "constant_tensors" in r:
        lines.append("- compared tensors that stayed one constant in every step: "
                     + (", ".join(r["constant_tensors"]) or "none")
                     + (f" (from {r['start']})" if "start" in r else ""))
    lines += [f"- wall time {r.get('run_s', r['wall_s']):.0f} s (simulator {r['sim_khz']:.0f} "
              f"kcycles/s)" + (f"; commit {r['commit']}" if "commit" in r else ""), ""]
    if per_phase:
        # (records made before the model gave its waits have no such column)
        predicted, waits = r["predicted"]["phases"], r["predicted"].get("waits")
        lines += ["| phase | core cycles | predicted | MAC busy | useful-MAC utilization |"
                  + (" core idle before it (model) |" if waits else ""),
                  "|---|---:|---:|---:|---:|" + ("---:|" if waits else "")]
        lines += [f"| {ph} | {v['cycles']:.0f} | {_predicted(v['cycles'], predicted.get(ph))} | "
                  f"{100 * v['busy_frac']:.1f}% | {100 * v['mac_util']:.1f}% |"
                  + (f" {_waits(predicted.get(ph), waits.get(ph))} |" if waits else "")
                  for ph, v in r["phases"].items() if v["cycles"]]
        lines += ["", WAITS_TEXT, ""] if waits else [""]
    return lines


WAITS_TEXT = ("Core idle before it: in the performance model, the cycles between the end of a run and "
              "the start of the next, in which the sequencer moves the next run's LOADs and command "
              "words or waits on STOREs, charged to the next run's phases (or GEMMs) as their core "
              "cycles share the run; in brackets as a share of their core cycles. Where it is large, "
              "the memory port, not the MAC array, bounds that part of the step "
              "(`hw.engine.perf.Prediction`).")


def _waits(core: float | None, wait: float | None, spec: str = ".0f") -> str:
    return f"{wait:{spec}} ({100 * wait / core:.0f}%)" if core else "-"


def _predicted(measured: float, predicted: float | None) -> str:
    """A phase's predicted core cycles and their error; the runs' END commands (phase control)
    the model counts in each run's overhead, spread over the phases."""
    if not predicted:
        return "in the others' run overhead"
    return f"{predicted:.0f} ({100 * (predicted / measured - 1):+.1f}%)"



def _same_cycles() -> str:
    """How the long run's cycles relate to the short record of the same network: the same
    engine gives the same cycles for the steps both ran."""
    first = long_files()[0]
    if not (cnn_file(LONG).exists() and first.exists()):
        return ""
    short, long_ = (json.loads(f.read_text()) for f in (cnn_file(LONG), first))
    if short["params"] != long_["params"]:
        return (f"It ran on the engine generated with int{long_['params']['weight_bits']} weights, "
                f"`{cnn_file(LONG).name}` above on the CNN engine (int{short['params']['weight_bits']}).")
    n = len(short["cycles_per_step_list"])
    if long_["cycles_per_step_list"][:n] == short["cycles_per_step_list"]:
        return f"Its first {n} steps took the cycles `{cnn_file(LONG).name}` above records, step for step."
    return (f"Its cycles are the engine's at the commit shown; `{cnn_file(LONG).name}` above has "
            "the current engine's.")


def _routed_fmax(r: dict) -> tuple[Path, float | None]:
    """The synth record of a performance-model record's engine, and its slowest routed Fmax."""
    synth = OUT / f"{synth_name(weight_bits=r['params']['weight_bits'])}.json"
    return synth, json.loads(synth.read_text()).get("worst_fmax_mhz") if synth.exists() else None


def _paper_cnn_lines() -> list[str]:
    """The paper's other CNNs in the performance model, a row each."""
    from hw.engine.perf import images_per_s

    recs = [json.loads(f.read_text()) for c in PAPER_CNNS[1:] if (f := OUT / f"{c}_model.json").exists()]
    if not recs:
        return []
    lines = ["## <config>_model.json: the paper's other CNNs on the engine (performance model, batch 64)", "",
             "F-MNIST's and CIFAR-10's VGG8B train with dropout (0.1, 0.15: the host writes the "
             "masks, `hw/engine/dropout.py`). On CIFAR-10, one window tap of a 32-pixel source "
             "row of 128 channels does not fit AMEM_C beside its output row: those convolutions' "
             "forwards run in chunks of some input channels of a tap (`hw/engine/tileshape.py`); "
             "each convolution GEMM's utilization is in utilization.png. A network the engine "
             "refuses is listed with the limit it meets.", "",
             "| config | tiles (runs) | useful MACs per step | memory | cycles per step | useful-MAC "
             "utilization | images/s at 150 MHz | at the slowest routed seed |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for r in recs:
        if "refused" in r:
            lines.append(f"| {r['config']} | refused: {r['refused']} | | | | | | |")
            continue
        synth, worst = _routed_fmax(r)
        for name, m in r["memories"].items():
            at = f"{images_per_s(worst, r['batch'], m['cycles_per_step']):.2f} ({worst} MHz)" if worst else "-"
            lines.append(f"| {r['config']} | {r['tiles']} ({r['runs']}) | {r['useful_macs_per_step']:.3g} | "
                         f"{name} | {m['cycles_per_step']:.4g} | {100 * m['mac_util']:.1f}% | "
                         f"{m['img_s_at_target']} | {at} |")
    return lines + [""]


def _vgg_lines() -> list[str]:
    """VGG8B: the performance model's numbers, then its co-simulated step."""
    from hw.engine.perf import images_per_s

    f = OUT / f"{VGG}_model.json"
    if not f.exists():
        return []
    r = json.loads(f.read_text())
    synth, worst = _routed_fmax(r)

    def at_routed(cycles: float) -> str:
        return (f"; {images_per_s(worst, r['batch'], cycles):.2f} at the slowest routed seed's {worst} MHz "
                f"({synth.name})" if worst else f"; the engine has not routed ({synth.name})")

    lines = [f"## {f.name}: VGG8B MNIST on the engine (performance model, batch {r['batch']})", "",
             f"- {r['tiles']} tiles in {r['runs']} runs (compiled and tiled in {r['compile_s']:.0f} s), "
             f"{r['useful_macs_per_step']:.3g} useful MACs per step"]
    lines += [f"- {name} memory: **{m['cycles_per_step']:.4g} cycles per step**, useful-MAC "
              f"utilization {100 * m['mac_util']:.1f}%: **{m['img_s_at_target']} images/s** at "
              f"{r['target_mhz']:.0f} MHz (the target)"
              + at_routed(m["cycles_per_step"])
              for name, m in r["memories"].items()]
    lines += ["", "| phase | cycles (ideal memory) | useful-MAC utilization |", "|---|---:|---:|"]
    lines += [f"| {ph} | {v['cycles']:.4g} | {100 * v['util']:.1f}% |"
              for ph, v in r["memories"]["ideal"]["phases"].items() if v["cycles"]]
    lines += ["", "Per convolution GEMM, the core's own cycles (its loads overlapped) and, with the "
              "ideal memory, the core idle before its runs:", "",
              "| GEMM | core cycles | useful-MAC utilization | core idle before it (model) |",
              "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['core_cycles']:.4g} | {100 * v['core_util']:.1f}% | "
              f"{_waits(v['core_cycles'], v['wait_cycles'], '.4g')} |" for k, v in conv_gemms(r["gemms"]).items()]
    lines += ["", WAITS_TEXT]
    rtl = OUT / f"cosim_{VGG}_1steps_b{VGG_RTL_BATCH}_ideal.json"
    return lines + [""] + (_cosim_lines(rtl, per_phase=True) if rtl.exists() else [])


def _header_lines() -> list[str]:
    """The title and the engine's description."""
    return ["# Streaming NITRO-D engine: recorded results", "",
             "Produced by `scripts/bench_engine.py` (see its docstring). One engine design: 8x8 "
             "int8 x int24 MAC array (int32 wrap), double-buffered scratchpads, a 64-bit AXI4 "
             "memory port (`_bus128`: the same engine generated with a 128-bit port); tensors in "
             "external memory. Weights are stored as int16 in the engine generated for an MLP and "
             "as int24 in the one for a CNN, whose weights outgrow int16 in training (`nitro "
             "cosim` picks by the network; `--weight-bits` overrides; each record names its "
             "width). Memory models (`nitro cosim "
             "--memory`): ideal = first beat 1 cycle after the address, one beat per cycle; ddr3 = "
             f"{DDR3_TEXT}.", ""]


def _run_lines() -> list[str]:
    """Each recorded co-simulation: MLPs, CNNs, the long run, VGG8B."""
    lines = []
    for config, memory, bus in cosim_runs():
        f = cosim_file(config, memory, bus)
        if f.exists():
            lines += _cosim_lines(f)
    for f in map(trained_file, TRAINED):
        if f.exists():
            lines += _cosim_lines(f)
    for f in map(cnn_file, CNN_RUNS):
        if f.exists():
            lines += _cosim_lines(f, per_phase=True)
    if any(f.exists() for f in long_files()):
        lines += [f"The long run of {LONG} ({LONG_STEPS} steps at batch 64, `bench_engine.py long`) "
                  f"in {LONG_SEGMENTS} segments simulated side by side: each segment's golden model "
                  "trains the steps before it alone and the engine starts from its weights (`nitro "
                  "cosim --start-step`), so every step ran on the engine from the weights the step "
                  f"before produced, which the segment before found bit-identical. {_same_cycles()}",
                  ""]
    for k, f in enumerate(long_files()):
        if f.exists():
            lines += _cosim_lines(f, per_phase=k == 0)
    if w24_file().exists():
        r = json.loads(w24_file().read_text())
        lines += [f"Weights wider than int16 (`bench_engine.py w24`): {W24}'s weights outgrow "
                  f"int16 in training (`{widths_file(W24, MLP_WEIGHT_BITS).name}` below). From "
                  f"{r['start']} (`{r['checkpoint']}`) the MLPs' int16 engine refuses them "
                  f"(\"{r['int16_engine']}\"); the CNN engine, with int"
                  f"{r['params']['weight_bits']} weights, trains from them:", ""]
        lines += _cosim_lines(w24_file())
    lines += _vgg_lines() + _paper_cnn_lines()
    return lines


CONFORM_TEXT = ("What `nitro conform --engine` compares (`sim/engine/conform.py`): per step the tensors "
                "the engine stores (block and output activations as the set names them, the stored "
                "NITRO-ReLU inputs, loss gradients and deltas) and every layer's weights after the "
                "step, plus the learning layers' transposed copies against the same weights; after "
                "the steps the predictions. The set's weights after each step are its initial "
                "weights less its recorded updates (`wupd/*`). The set's other arrays (int32 GEMM "
                "outputs, weight gradients) are intermediate tensors the engine does not keep; "
                "`nitro conform` without `--engine` compares every one of them on the golden model.")


def _conform_lines() -> list[str]:
    """`nitro conform --engine` on the official sets."""
    lines = []
    if any((OUT / f"conform_{tag}.json").exists() for tag in OFFICIAL_SETS):
        lines += [CONFORM_TEXT, ""]
    for f in (OUT / f"conform_{tag}.json" for tag in OFFICIAL_SETS):
        if f.exists():
            r = json.loads(f.read_text())
            steps = ", ".join(f"{k}: {v['arrays']} arrays, {v['differ']} differ"
                              for k, v in r["steps"].items())
            lines += [f"## {f.name}", "",
                      f"- `nitro conform --engine` on the official `{r['set']}` set: every "
                      f"array the engine produces matches: **{r['ok']}** ({steps}); "
                      f"{r['wall_s']:.0f} s",
                      "- arrays of the set that hold one value throughout (a match shows little "
                      f"about them): {', '.join(r['constant_arrays']) or 'none'}", ""]
    return lines


def _regression_lines() -> list[str]:
    """The constrained-random regression (`scripts/regress_engine.py`)."""
    from scripts.regress_engine import RESULT

    if not RESULT.exists():
        return []
    r = json.loads(RESULT.read_text())
    escaped = [(why.replace("|", r"\|"), n) for why, n in r["refusals"].items()]  # in a table cell
    lines = [f"## {RESULT.name}: random networks on the engine (`scripts/regress_engine.py`)", "",
             f"- seed {r['seed']}, {r['cases']} of {r['cases_drawn']} drawn cases at {r['git_commit']}: **{r['passed']} passed** "
             f"(bit-identical after every step, predictions identical), {r['refused']} refused by the "
             f"compiler, {r['outgrew']} stopped where the golden weights outgrew the engine's weight "
             f"storage, **{r['failed']} failed**; {r['simulated_cycles'] / 1e6:.0f} M engine cycles "
             f"simulated, {r['seconds'] / 60:.0f} minutes on {r['machine']}", "",
             "| refused or stopped by | cases |", "|---|---:|",
             *(f"| {why} | {n} |" for why, n in escaped), "",
             "The performance model's cycles per step against the RTL counters on the passed cases, "
             "per memory kind:", "",
             "| memory | cases | mean abs error | max abs error (case) | within 5 % |", "|---|---:|---:|---:|---:|",
             *(f"| {m} | {e['cases']} | {100 * e['mean_abs_error']:.2f} % | {100 * e['max_abs_error']:.2f} % "
               f"({e['worst_case']}) | {e['within_5pct']} |" for m, e in r["prediction"].items()), "",
             "Functional coverage, the passed cases in each bin:", "", "| bin | cases |", "|---|---:|",
             *(f"| {b} | {n} |" for b, n in r["coverage"].items()), ""]
    for f in r["failures"]:
        lines += [f"- case {f['index']} {f['outcome']}: {f['reason'].splitlines()[0]}"]
    return lines + ([""] if r["failures"] else [])


def _perf_model_lines() -> list[str]:
    """The performance model against the runs, and what bounds utilization."""
    lines = []
    from hw.engine.perf import COMMAND_CYCLES, RUN_OVERHEAD_CYCLES

    pm = OUT / "perf_model.json"
    if pm.exists():
        r = json.loads(pm.read_text())
        lines += ["## perf_model.json: predicted vs measured cycles per step", "",
                  "| run | predicted | measured | error |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['predicted']:.0f} | {v['measured']:.0f} | {100 * v['error']:+.2f}% |"
                  for k, v in r["runs"].items()]
        lines += ["", "What bounds useful-MAC utilization with the ideal memory "
                  "(`utilization_ceiling`): the core's own cycles (the 8x8 array pads the learning "
                  "layers' 10 outputs to 16, serial output ops take 64 cycles per C tile when K < 64, "
                  f"{RUN_OVERHEAD_CYCLES} cycles for a run's first command and {COMMAND_CYCLES} for "
                  "each further one) and, in a step that starts cold, the first run's loads, which "
                  "nothing overlaps (a warm step found them loaded):", "",
                  "| network | useful MAC cycles | core cycles | core-bound | first-run load beats "
                  "| with them | measured |", "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {k} | {v['useful_mac_cycles']:.0f} | {v['core_cycles']:.0f} | "
                  f"{100 * v['core_bound']:.1f}% | {v['first_run_load_beats']} | "
                  f"{100 * v['with_first_load']:.1f}% | {100 * v['measured']:.1f}% |"
                  for k, v in r.get("utilization_ceiling", {}).items()]
        lines.append("")
    return lines


def _synth_lines() -> list[str]:
    """Each routed engine (the MLPs', the CNNs'): Fmax per seed, the slowest seed's late inputs,
    resources, projections."""
    lines = []
    for bits, what in ((MLP_WEIGHT_BITS, "the whole engine"),
                       (CNN_WEIGHT_BITS, f"the CNN engine (int{CNN_WEIGHT_BITS} weights)")):
        s = OUT / f"{synth_name(weight_bits=bits)}.json"
        if s.exists():
            lines += _routed_lines(s, what)
    return lines


def _routed_lines(s: Path, what: str) -> list[str]:
    r = json.loads(s.read_text())
    lines = [f"## {s.name}: {what} on the {r['device']} ({r['package']}, speed "
             f"{r['speed']}), AXI ports as pins, each channel on adjacent pins "
             f"(sim/engine/pinout.py), target {r['target_mhz']} MHz", "",
             "| nextpnr seed | Fmax (MHz) | critical path | late register inputs | place and route |",
             "|---|---:|---|---:|---:|"]
    for seed, v in r["seeds"].items():
        cp = v["critical_path"]
        path = (f"{cp['delay_ns']} ns: {cp['from']} -> {cp['to']} ({cp['cells']} cells, routing "
                f"{cp['routing_ns']} ns)" if cp else v.get("status"))
        lines.append(f"| {seed} | {v['fmax_mhz'] or '-'} | {path} | {v.get('late_inputs') or '-'} | "
                     f"{v['nextpnr_s'] / 60:.0f} min |")
    worst = min((v for v in r["seeds"].values() if v["fmax_mhz"]), key=lambda v: v["fmax_mhz"],
                default={})
    if worst.get("late_groups"):
        lines += ["", "The slowest seed's late register inputs by group (what to pipeline next):", "",
                  "| registers | input | inputs | worst arrival (ns) |", "|---|---|---:|---:|"]
        lines += [f"| `{g['registers']}` | {g.get('input', '-')} | {g['endpoints']} | "
                  f"{g['worst_arrival_ns']} |" for g in worst["late_groups"]]
    lines += [""] + resource_table(r["utilization"]) + _rtl_since(r)
    if r["projected_img_s_at_worst_fmax"]:
        lines += ["", f"Projected training throughput at the slowest routed seed's Fmax "
                  f"({r['worst_fmax_mhz']} MHz), from the co-simulations recorded on this engine: "
                  + ", ".join(f"{k}: {v:,.0f} images/s" if v >= 100 else f"{k}: {v:.1f} images/s"
                              for k, v in r["projected_img_s_at_worst_fmax"].items())
                  + f" (the golden model trains the MNIST MLP at {r['golden_model_cpu_img_s']:,.0f} "
                    "images/s on this CPU)."]
    return lines + [""]


def _rtl_since(r: dict) -> list[str]:
    """A line when the engine's RTL has changed since the routed netlist."""
    from hw.engine.params import EngineParams
    from sim.engine.synth import engine_verilog, verilog_digest

    now = verilog_digest(engine_verilog(EngineParams(**r["params"])))
    return [] if now == r["verilog_sha256"] else [
        "", f"These seeds routed Verilog {r['verilog_sha256'][:8]}; the engine's RTL has changed "
            f"since (now Verilog {now[:8]}, see `git log hw/`) and has not been routed."]


def _which_netlist(r: dict) -> str:
    """Whether record `r` holds the netlist routed in synth.json or an earlier one."""
    routed = OUT / "synth.json"
    routed_sha = json.loads(routed.read_text()).get("verilog_sha256") if routed.exists() else None
    return ("the netlist routed in synth.json" if r.get("verilog_sha256") == routed_sha else
            f"Verilog {str(r.get('verilog_sha256'))[:8]}, an earlier RTL than the one routed in "
            f"synth.json ({str(routed_sha)[:8]})")


def _placed_lines() -> list[str]:
    """The placed-only engine: nextpnr's estimate, resources, floorplan."""
    lines = []
    pl = OUT / "synth_placed_seed1.json"
    if pl.exists():
        r = json.loads(pl.read_text())
        lines += [f"## {pl.name}: the whole engine placed, not routed ({r['device']}, {r['package']}, "
                  f"speed {r['speed']}, AXI ports as pins)", "",
                  f"Placed: {_which_netlist(r)}. nextpnr's estimate after placement: "
                  f"**{r['pre_route_fmax_estimate_mhz']} MHz** "
                  f"(target {r['target_mhz']} MHz). The estimate charges a fixed delay per tile of "
                  "distance and is dominated by die-spanning nets, so it does not predict the routed "
                  "Fmax (the first engine's reduced variant, placed with a 95.1 MHz estimate, routed "
                  "at 130.68 MHz: `v1/routing_attempts.json`, reduced-b27308e-tw30-r1).", ""]
        lines += resource_table(r["utilization"]) + [""]
        if r.get("floorplan"):
            lines += _floorplan_lines(r["floorplan"], "floorplan_placed_seed1.png")
    return lines


def _congestion_lines() -> list[str]:
    """router2's congestion runs."""
    lines = []
    for c in sorted(OUT.glob("routing_congestion_seed*.json")):
        r = json.loads(c.read_text())
        its = r["overused_by_iteration"]
        lines += [f"## {c.name}: where routing the whole engine congests (router2, seed {r['seed']})", "",
                  f"Routed: {_which_netlist(r)}. {r['iterations']} router2 iterations in {r['minutes']} minutes, then "
                  + (f"routed at {r['fmax_mhz']} MHz." if r.get("fmax_mhz") else "stopped, not routed.")
                  + f" Overused wires after each: {', '.join(f'{v:,}' for v in its[:3])} ... "
                  f"{', '.join(f'{v:,}' for v in its[-3:])}." + (f" ({r['note']}.)" if r.get("note") else ""), "",
                  f"Overuse on a 4 x 4 split of the die at iteration {r['heatmap_iteration']} (%; "
                  "rows: bands of tile columns x from the left, columns: bands of rows y):", "",
                  "| x \\ y | 1 | 2 | 3 | 4 |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in row) + " |"
                  for i, row in enumerate(r["overuse_by_region_pct"])]
        lines += ["", "Congested nets by module (% of router2's per-net congestion count):", "",
                  "| module | % |", "|---|---:|"]
        lines += [f"| `{k}` | {v} |" for k, v in r["congested_nets_by_module_pct"].items()]
        lines += ["", "The packed design against the device's capacity:", ""]
        lines += resource_table(r["utilization"]) + [""]
    return lines


def _ebr_lines() -> list[str]:
    """A block RAM read routed alone, with and without its output register."""
    lines = []
    e = OUT / "ebr_outreg.json"
    if e.exists():
        r = json.loads(e.read_text())
        lines += [f"## ebr_outreg.json: a block RAM read, {r['memory']} alone on the LFE5U-85F", ""]
        for k, title in (("yosys_map", "as yosys maps it (DP16KD output register unused)"),
                         ("output_register_packed", "output register packed (sim.ebr_outreg)")):
            cp = r[k]["critical_path"]
            lines.append(f"- {title}: **{r[k]['fmax_mhz']} MHz**; critical path {cp['delay_ns']} ns "
                         f"({cp['from']} -> {cp['to']}: logic {cp['logic_ns']} ns, routing "
                         f"{cp['routing_ns']} ns)")
        lines.append("")
    return lines


def _margin_lines() -> list[str]:
    """The flush margin: runs without it and with less, until one differs."""
    f = OUT / "flush_margin.json"
    if not f.exists():
        return []
    r = json.loads(f.read_text())
    lines = [f"## flush_margin.json: the sequencer's flush without its margin of "
             f"{r['default_wait_cycles']} cycles, and shorter until a run differs", "",
             "Flush per command kind (cycles): " + "; ".join(
                 f"wait_cycles {w}: " + ", ".join(f"{k} {v}" for k, v in f.items())
                 for w, f in r["flush"].items()), "",
             "| run | steps | bit-identical | first difference |", "|---|---:|---|---|"]
    for k, v in r["runs"].items():
        mm = v["mismatch"]
        lines.append(f"| {k} (batch {v['batch']}) | {v['steps_run']} | {v['ok']} | "
                     + (f"step {mm['step']}, {mm['tensor']}, {mm['count']} elements" if mm else "")
                     + " |")
    if r["all_identical_down_to"] is not None:
        w = r["all_identical_down_to"]
        lines += ["", f"Every run (from {r['start']}) is bit-identical down to wait_cycles {w}, "
                  "cycles under the computed flush: "
                  + ", ".join(f"{k} {v}" for k, v in r["under"][str(w)].items()) + "."]
    if r["first_caught"] is not None:
        w = r["first_caught"]
        lines += [f"At wait_cycles {w} a run differs, cycles under: "
                  + ", ".join(f"{k} {v}" for k, v in r["under"][str(w)].items()) + "."]
    return lines + ["", f"Commit {r['commit']}.", ""]


def _widths_lines() -> list[str]:
    """The storage widths checked on real training."""
    lines = []
    for w in sorted(OUT.glob("widths*.json")):
        r = json.loads(w.read_text())
        found = (f"stopped after {r['seconds']:.0f} s of training at the first value that does not "
                 f"fit: {r['first_overflow']}" if r["overflows"] else
                 f"{r['epochs']} epoch(s), no overflow; max |W| per layer {r['max_abs_weight']}")
        lines += [f"## {w.name}", "",
                  f"- golden model, check mode, int{r['declared_widths']['weight']} weights and "
                  f"int{r['declared_widths']['delta']} deltas, {r['config']}: {found}", ""]
    return lines


def _figure_lines() -> list[str]:
    """The figures (`bench_engine_plots`), written from the records now."""
    from scripts.bench_engine_plots import CONV_UTIL_TARGET, FMAX_PNG, UTILIZATION_PNG, write_figures

    captions = {UTILIZATION_PNG: "Useful-MAC utilization of each convolution GEMM with the ideal "
                                 f"memory, from the records below (red: under the project's target of "
                                 f"{100 * CONV_UTIL_TARGET:.0f} % for every convolution GEMM)",
                FMAX_PNG: "Fmax after routing, per nextpnr seed, of the landed engines and of "
                          "every timing experiment (`timing_experiments.json`)"}
    return [f"![{f}]({f})\n\n*{captions[f]}.*\n" for f in write_figures()]


def write_readme() -> None:
    lines = [*_header_lines(), *_figure_lines(), *_run_lines(), *_conform_lines(), *_regression_lines(),
             *_perf_model_lines(), *_synth_lines(), *_placed_lines(), *_pinless_lines(),
             *_congestion_lines(), *_ebr_lines(), *_margin_lines(), *_widths_lines(),
             "The first engine's results (all tensors on chip) are in `v1/`.", ""]
    write_atomic(OUT / "README.md", ("\n".join(lines)).encode())
