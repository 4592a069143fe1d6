"""The synthesis and timing modes of `bench_engine` (synth, experiment, place, small, pinless, ebr,
congestion, floorplan): yosys and nextpnr runs of the engine and their records."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hw.engine.params import MLP_WEIGHT_BITS, EngineParams, engine_with_weights
from model.fileio import write_atomic
from model.paths import REPO
from scripts.engine_records import (
    OUT, TARGET_MHZ, pinless_file, seed_dir, stamp, synth_name,
)
from scripts.provenance import commit
from sim.device import ENGINE_DEVICE


def golden_img_s(data_dir: str) -> tuple[float, str]:
    from sim.engine.synth import recorded_golden_img_s

    rec = recorded_golden_img_s()
    if rec is not None:
        return rec, "benchmarks/bench_train.json"
    from scripts.bench_train import _rate

    r = _rate("mlp_mnist", 200, 20, data_dir)
    return float(r["images_per_s"]), "measured by scripts/bench_engine.py (scripts.bench_train._rate, 200 steps)"


def _route_seed(seed: int, minutes: float | None, speed: int, p: EngineParams) -> dict:
    from sim.engine.synth import synthesize_engine

    res = synthesize_engine(seed_dir(seed, speed, p.weight_bits), p, seed=seed, route_minutes=minutes,
                            project=False, speed=speed)
    write_atomic(OUT / f"{synth_name(speed, p.weight_bits)}_seed{seed}.json",
                 json.dumps(res, indent=1).encode())
    if res.get("floorplan") and (speed, p) == (ENGINE_DEVICE.speed, EngineParams()):
        _record_floorplan(seed, res["floorplan"])
    return res


def _record_floorplan(seed: int, fp: dict) -> Path:
    """floorplan_seed<K>.json (with the RTL it is of) and the plot beside it."""
    from sim.engine.synth import verilog_digest

    out = OUT / f"floorplan_seed{seed}.json"
    fmax = json.loads((seed_dir(seed) / "report.json").read_text())["fmax"]
    fp = {"seed": seed, "fmax_mhz": round(min(v["achieved"] for v in fmax.values()), 2),
          "verilog_sha256": verilog_digest((seed_dir(seed) / "top.v").read_text()), **fp}
    write_atomic(out, json.dumps(fp, indent=1).encode())
    write_atomic(out.with_suffix(".png"), (seed_dir(seed) / "floorplan.png").read_bytes())
    return out


def bench_floorplan(seed: int) -> Path:
    """The floorplan of a seed already routed in build/engine/synth_seed<K>."""
    from sim.engine.floorplan import floorplan_files

    d = seed_dir(seed)
    if not (d / "routed.json").exists():
        raise SystemExit(f"bench_engine: error: {d} holds no routed engine (run the synth mode)")
    return _record_floorplan(seed, floorplan_files(d, 1e3 / TARGET_MHZ, f"engine, nextpnr seed {seed}"))


def routed_records(name: str, seeds: list[int], current: tuple[str, str]) -> dict[int, dict]:
    """seed -> its record <name>_seed<K>.json, for the seeds whose record routed the Verilog and
    pin constraints whose digests are `current` (a seed not routed is to be tried again)."""
    runs = {}
    for seed in seeds:
        f = OUT / f"{name}_seed{seed}.json"
        rec = json.loads(f.read_text()) if f.exists() else {}
        if (rec.get("verilog_sha256"), rec.get("lpf_sha256")) == current and rec.get("fmax_mhz"):
            runs[seed] = rec
    return runs


def bench_synth(seeds: list[int], data_dir: str, jobs: int = 1, minutes: float | None = None,
                speed: int = ENGINE_DEVICE.speed, weight_bits: int = MLP_WEIGHT_BITS) -> Path:
    """Route the engine once per nextpnr seed, `jobs` seeds at a time (each nextpnr is one
    thread), each stopped after `minutes` (a "not routed" record); a seed whose record
    (synth_seed<K>.json) routed this RTL's Verilog and pin constraints is kept (one not routed
    is tried again).
    synth.json: every seed's Fmax, critical path and routing time, the resources, and the
    training throughput projected at the worst Fmax from the co-simulations recorded on this
    engine. Another speed grade than the target's: the same as synth_speed<G>_seed<K>.json and
    synth_speed<G>.json; the engine with `weight_bits`-bit weights (the CNNs'): synth_w<B>*."""
    from concurrent.futures import ProcessPoolExecutor

    from hw.engine.perf import images_per_s
    from sim.engine.synth import engine_lpf, engine_verilog, share_netlist, verilog_digest

    p = engine_with_weights(weight_bits)
    name = synth_name(speed, weight_bits)
    img_s, src = golden_img_s(data_dir)
    current = (verilog_digest(engine_verilog(p)), hashlib.sha256(engine_lpf(p).encode()).hexdigest())
    runs = routed_records(name, seeds, current)
    todo = [s for s in seeds if s not in runs]
    if todo:
        share_netlist([seed_dir(s, speed, weight_bits) for s in todo], p)
    n = len(todo)
    with ProcessPoolExecutor(max(1, min(jobs, n or 1))) as pool:
        runs |= dict(zip(todo, pool.map(_route_seed, todo, [minutes] * n, [speed] * n, [p] * n)))
    runs = {s: runs[s] for s in seeds}
    routed = [r["fmax_mhz"] for r in runs.values() if r["fmax_mhz"] is not None]
    worst = min(routed) if routed else None
    first = runs[seeds[0]]
    summary = {k: first[k] for k in ("device", "package", "speed", "target_mhz", "utilization",
                                     "yosys_cells", "params") if k in first}
    summary["seeds"] = {str(s): {"fmax_mhz": r["fmax_mhz"], "meets_target": r["meets_target"],
                                 "critical_path": r["critical_path"], "nextpnr_s": r["nextpnr_s"],
                                 "status": r.get("status") or "routed",
                                 "late_inputs": r.get("late_endpoints", {}).get("count"),
                                 "late_groups": r.get("late_endpoints", {}).get("groups", [])[:8]}
                        for s, r in runs.items()}
    summary["verilog_sha256"], summary["lpf_sha256"] = first.get("verilog_sha256"), first.get("lpf_sha256")
    summary["worst_fmax_mhz"] = worst
    summary["golden_model_cpu_img_s"], summary["golden_model_cpu_img_s_source"] = img_s, src
    summary["projected_img_s_at_worst_fmax"] = {}
    for f in sorted(OUT.glob("cosim_*.json")):
        c = json.loads(f.read_text())
        if c.get("params") == summary["params"] and worst is not None:
            summary["projected_img_s_at_worst_fmax"][f.stem.removeprefix("cosim_")] = round(
                images_per_s(worst, c["batch"], c["cycles_per_step"]), 1)
    out = OUT / f"{name}.json"
    write_atomic(out, json.dumps(summary, indent=1).encode())
    print(json.dumps(summary, indent=1))
    return out


EXPERIMENTS = OUT / "timing_experiments.json"


def seed_summary(rec: dict) -> dict:
    """One routed seed of a synth_seed<K>.json in brief: Fmax, routing time, critical path, the
    late register inputs and their six worst groups, the size, and which RTL it was."""
    cp = rec["critical_path"]
    return {"fmax_mhz": rec["fmax_mhz"], "nextpnr_minutes": round(rec["nextpnr_s"] / 60),
            "critical_path": f"{cp['delay_ns']} ns: {cp['from']} -> {cp['to']} ({cp['cells']} cells, "
                             f"routing {cp['routing_ns']} ns)",
            "late_inputs_at_150mhz": rec["late_endpoints"]["count"],
            "worst_groups": [f"{g['registers']} ({g['input']}): {g['endpoints']}, {g['worst_arrival_ns']} ns"
                             for g in rec["late_endpoints"]["groups"][:6]],
            "ff": rec["utilization"]["TRELLIS_FF"]["used"], "lut": rec["utilization"]["TRELLIS_COMB"]["used"],
            "verilog_sha256": rec["verilog_sha256"]}


def _seed_records(records: Path, speed: int = ENGINE_DEVICE.speed,
                  weight_bits: int = MLP_WEIGHT_BITS) -> tuple[dict[str, dict], dict[str, str]]:
    """One netlist's seeds in `records`: the routed ones in brief, and how far the others got
    (records of two netlists side by side, e.g. a branch's beside the ones it was cloned with,
    are refused)."""
    routed, unrouted, name = {}, {}, synth_name(speed, weight_bits)
    for f in sorted(records.glob(f"{name}_seed*.json")):
        rec, seed = json.loads(f.read_text()), f.stem.removeprefix(f"{name}_seed")
        if rec.get("fmax_mhz") is not None:
            routed[seed] = seed_summary(rec)
        else:
            unrouted[seed] = rec.get("status") or "not routed"
    if not routed and not unrouted:
        raise SystemExit(f"no {name}_seed<K>.json in {records}")
    if len({v["verilog_sha256"] for v in routed.values()}) > 1:
        raise SystemExit(f"the routed records in {records} are of different netlists: "
                         + ", ".join(f"seed {s}: {v['verilog_sha256'][:8]}" for s, v in routed.items()))
    return routed, unrouted


def _merge_seeds(prior: dict, routed: dict[str, dict],
                 unrouted: dict[str, str]) -> tuple[dict[str, dict], dict[str, str]]:
    """An experiment's seeds with those of new records (`routed`, `unrouted`) added: a seed in the
    new records replaces its earlier result, the others are kept (seeds routed in several
    sessions); a netlist other than the one recorded before is refused."""
    shas = {v["verilog_sha256"] for v in [*prior.get("seeds", {}).values(), *routed.values()]}
    if len(shas) > 1:
        raise SystemExit(f"experiment {prior['name']!r} was routed on another netlist: name this one anew")
    fresh = routed.keys() | unrouted.keys()

    def keep(old: dict, new: dict) -> dict:
        return dict(sorted(({s: v for s, v in old.items() if s not in fresh} | new).items(),
                           key=lambda kv: int(kv[0])))
    return keep(prior.get("seeds", {}), routed), keep(prior.get("unrouted", {}), unrouted)


def bench_experiment(name: str, changes: str, records: Path, speed: int = ENGINE_DEVICE.speed,
                     flow: bool = False, weight_bits: int | None = None) -> Path:
    """timing_experiments.json with the experiment `name` (the seeds in `records` of speed grade
    `speed` and of the engine with `weight_bits`-bit weights: the routed ones, and as `unrouted`
    how far the others got) added, or its seeds merged with these (`_merge_seeds`), and the
    landed netlist's seeds (this checkout's records) as the baseline. `flow`: an experiment with
    the flow (a netlist routed another way), under flow_experiments."""
    doc = json.loads(EXPERIMENTS.read_text()) if EXPERIMENTS.exists() else {}
    doc["baseline"] = _seed_records(OUT)[0]
    section = "flow_experiments" if flow else "experiments"
    old = {e["name"]: e for e in doc.get(section, [])}
    routed, unrouted = _merge_seeds(old.get(name, {}),
                                    *_seed_records(records, speed, weight_bits or MLP_WEIGHT_BITS))
    entry = {k: v for k, v in old.get(name, {}).items() if k != "unrouted"}
    entry |= {"name": name, "changes": changes, "seeds": routed}
    if unrouted:
        entry["unrouted"] = unrouted
    doc[section] = [entry if e["name"] == name else e for e in old.values()] + (
        [] if name in old else [entry])
    write_atomic(EXPERIMENTS, (json.dumps(doc, indent=1) + "\n").encode())
    print({e["name"][:40]: {s: v["fmax_mhz"] for s, v in e.get("seeds", {}).items()} for e in doc[section]})
    return EXPERIMENTS


def bench_place(data_dir: str) -> Path:
    from sim.engine.synth import synthesize_engine

    img_s, _ = golden_img_s(data_dir)
    d = REPO / "build" / "engine" / "synth_place"
    res = synthesize_engine(d, seed=1, golden_img_s=img_s, route=False)
    out = OUT / "synth_placed_seed1.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    write_atomic(OUT / "floorplan_placed_seed1.png", (d / "floorplan.png").read_bytes())
    return out


def bench_congestion(minutes: float, seed: int = 1) -> Path:
    from sim.engine.synth import route_congestion

    res = route_congestion(REPO / "build" / "engine" / f"congestion_seed{seed}", seed, minutes)
    out = OUT / f"routing_congestion_seed{seed}.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    stamp(out)
    return out


SMALL_DIVISOR = 4


DEPTHS = ("amem_c_depth", "amem_r_depth", "wmem_depth", "wtmem_depth", "dmem_depth", "smem_depth",
          "ymem_depth")


def bench_small(data_dir: str, seed: int = 1) -> Path:
    from dataclasses import replace

    from sim.engine.synth import synthesize_engine

    p = EngineParams()
    small = replace(p, **{k: getattr(p, k) // SMALL_DIVISOR for k in DEPTHS})
    img_s, _ = golden_img_s(data_dir)
    res = synthesize_engine(REPO / "build" / "engine" / f"synth_small_seed{seed}", small, seed=seed,
                            golden_img_s=img_s)
    res["note"] = (f"timing probe: the engine with its scratchpad depths divided by {SMALL_DIVISOR}; "
                   "the cycles and projections are the whole engine's")
    out = OUT / f"routing_small_seed{seed}.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    return out


def bench_pinless(seeds: list[int], speed: int) -> list[Path]:
    """EnginePinlessTop routed with the flow's options, one seed at a time: Fmax, critical path and
    late inputs beside the engine's own (the same Verilog inside)."""
    from sim.engine.synth import engine_verilog, synthesize_engine, verilog_digest

    outs, engine_sha = [], verilog_digest(engine_verilog(EngineParams()))
    for seed in seeds:
        res = synthesize_engine(REPO / "build" / "engine" / f"pinless_speed{speed}_seed{seed}", seed=seed,
                                speed=speed, project=False, pinless=True)
        rec = {"seed": seed, "speed": speed, "engine_verilog_sha256": engine_sha,
               **seed_summary(res), "utilization": res["utilization"], "commit": commit()}
        write_atomic(out := pinless_file(seed, speed), json.dumps(rec, indent=1).encode())
        outs.append(out)
    return outs


def bench_ebr() -> Path:
    from sim.engine.synth import memory_read_fmax

    res = memory_read_fmax(REPO / "build" / "engine" / "ebr")
    out = OUT / "ebr_outreg.json"
    write_atomic(out, json.dumps(res, indent=1).encode())
    print(json.dumps(res, indent=1))
    return out
