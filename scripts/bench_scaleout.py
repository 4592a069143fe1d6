"""VGG8B on MNIST, scaled out on Ray: images/s on this machine for one process, `--pipeline` and
`--data-parallel 2` (every worker one BLAS thread), the compute time and bytes sent per step of
every pipeline stage, and a projection to 4, 16 and 64 machines.

Writes benchmarks/scaleout/scaleout.json, README.md and scaleout.png.

    .venv/bin/python scripts/bench_scaleout.py [--steps 6] [--data-dir ../shared/datasets]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np
from threadpoolctl import threadpool_limits

from model.config import load_config
from model.fileio import write_atomic, write_figure
from model.parallel import ParallelPlan, ParallelStepper, StageWorker, balanced_cuts, plan_stages
from model.paths import REPO, SHARED_DATASETS
from model.train import prepare
from scripts.provenance import commit, host

OUT = REPO / "benchmarks" / "scaleout"
# Assumed interconnect for the projection (this machine has no second one to measure against).
LINK_BYTES_S = 1.25e9  # 10 Gbit/s Ethernet
LINK_LATENCY_S = 50e-6  # per message


def batches(cfg, ds, n: int):
    bs = cfg.train.batch_size
    return [(ds.train_x[k * bs:(k + 1) * bs], ds.train_y[k * bs:(k + 1) * bs]) for k in range(n)]


def weights_digest(net) -> str:
    """The network's weights after a run, to compare the modes (each trains the same batches)."""
    h = hashlib.sha256()
    for name in sorted(net.params):
        h.update(name.encode() + np.ascontiguousarray(net.params[name]).tobytes())
    return h.hexdigest()


def rate_one_process(cfg, data_dir: str, steps: int) -> tuple[float, str]:
    ds, net, rng = prepare(cfg, data_dir)
    work = batches(cfg, ds, steps + 1)
    with threadpool_limits(1):
        net.train_step(*work[0], cfg.train.lr_inv, rng=rng)  # warm-up
        t0 = time.perf_counter()
        for x, y in work[1:]:
            net.train_step(x, y, cfg.train.lr_inv, rng=rng)
    return steps * cfg.train.batch_size / (time.perf_counter() - t0), weights_digest(net)


def rate_on_ray(cfg, data_dir: str, steps: int, plan: ParallelPlan) -> tuple[float, str]:
    from scripts.scaleout import RayExecutor, cpus_per_worker, ray_session

    ds, net, rng = prepare(cfg, data_dir)
    work = batches(cfg, ds, steps + 1)
    with ray_session(None, num_cpus=2) as ray:
        cpus = cpus_per_worker(ray, plan, len(plan_stages(net, plan.stages)))
        stepper = ParallelStepper(net, plan, RayExecutor(cpus))
        stepper.step(*work[0], cfg.train.lr_inv, rng)
        stepper.drain()
        t0 = time.perf_counter()
        for x, y in work[1:]:
            stepper.step(x, y, cfg.train.lr_inv, rng)
        stepper.drain()
        dt = time.perf_counter() - t0
        stepper.sync(net)
        stepper.close()
    return steps * cfg.train.batch_size / dt, weights_digest(net)


def stage_profile(cfg, data_dir: str, steps: int) -> list[dict]:
    """Per block (one stage each, the output layer with the last): seconds per step on one BLAS
    thread, activation bytes sent on, and gradient bytes a data-parallel replica exchanges."""
    ds, net, _ = prepare(cfg, data_dir)
    stages = plan_stages(net, None)
    workers = [StageWorker(net.spec, net.params, net.policy, s, True) for s in stages]
    rows = [{"items": [it.name for it in net.spec.items[s.start:s.stop]], "macs_per_image": s.macs,
             "seconds": 0.0} for s in stages]
    with threadpool_limits(1):
        for x, y in batches(cfg, ds, steps):
            h = x
            for w, s, row in zip(workers, stages, rows):
                t0 = time.perf_counter()
                out = w.forward(h, y, {})
                grads = [w.gradients(u) for u in s.units]
                for g in grads:
                    w.apply(cfg.train.lr_inv, g)
                row["seconds"] += (time.perf_counter() - t0) / steps
                row["activation_bytes"] = 0 if out is None else int(out.nbytes)
                row["gradient_bytes"] = int(sum(a.nbytes for g in grads for a in g.values()))
                h = out
    return rows


def project(profile: list[dict], batch: int, machines: int, max_shards: int | None = None) -> dict:
    """Best (stages, shards) with stages x shards <= machines, one worker per machine, stages cut
    to balance the measured times: a step takes the slowest stage's compute / shards plus its
    activation transfer and a ring all-reduce of its gradients (2 (D-1)/D of the bytes, 2 (D-1)
    messages). max_shards=1: a pure pipeline."""
    best = None
    n = len(profile)
    for stages in range(1, n + 1):
        shards = min(machines // stages, batch, max_shards or batch)
        if shards < 1:
            break
        cuts = balanced_cuts([r["seconds"] for r in profile], stages)
        times = []
        for g in (range(a, b) for a, b in zip(cuts, cuts[1:])):
            comp = sum(profile[i]["seconds"] for i in g) / shards
            act = profile[g[-1]]["activation_bytes"] / shards / LINK_BYTES_S + LINK_LATENCY_S
            grad = sum(profile[i]["gradient_bytes"] for i in g)
            ring = (2 * (shards - 1) / shards * grad / LINK_BYTES_S + 2 * (shards - 1) * LINK_LATENCY_S
                    if shards > 1 else 0.0)
            times.append(comp + act + ring)
        step = max(times)
        cand = {"machines": machines, "stages": stages, "shards": shards, "images_s": batch / step,
                "slowest_stage": int(np.argmax(times)), "stage_seconds": times}
        if best is None or cand["images_s"] > best["images_s"]:
            best = cand
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--data-dir", default=str(SHARED_DATASETS))
    a = ap.parse_args()
    cfg = load_config(REPO / "configs" / "vgg8b_mnist.toml")
    one = "one process (1 BLAS thread)"
    rates, digests = {}, {}
    rates[one], digests[one] = rate_one_process(cfg, a.data_dir, a.steps)
    n_blocks = len(plan_stages(prepare(cfg, a.data_dir)[1], None))
    for label, plan in (("--pipeline 2", ParallelPlan(2, 1)), ("--data-parallel 2", ParallelPlan(1, 2)),
                        (f"--pipeline ({n_blocks} stages)", ParallelPlan(None, 1))):
        rates[label], digests[label] = rate_on_ray(cfg, a.data_dir, a.steps, plan)
        print(f"{label}: {rates[label]:.1f} img/s", flush=True)
    identical = {k: d == digests[one] for k, d in digests.items() if k != one}
    profile = stage_profile(cfg, a.data_dir, max(2, a.steps // 2))
    projection = [project(profile, cfg.train.batch_size, m) for m in (1, 4, 16, 64)]
    pipeline_only = [project(profile, cfg.train.batch_size, m, max_shards=1) for m in (1, 4, 16, 64)]
    doc = {"network": "vgg8b_mnist", "batch": cfg.train.batch_size, "steps": a.steps,
           "machine": host(), "images_s": rates,
           "weights_identical_to_one_process": identical, "weights_sha256": digests, "stages": profile,
           "projection": projection, "projection_pipeline_only": pipeline_only,
           "assumed_link": {"bytes_s": LINK_BYTES_S, "latency_s": LINK_LATENCY_S},
           "commit": commit()}
    OUT.mkdir(parents=True, exist_ok=True)
    write_atomic(OUT / "scaleout.json", json.dumps(doc, indent=1).encode())
    write_readme(doc)
    plot(doc)
    if not all(identical.values()):
        raise SystemExit(f"weights differ from one process's: {[k for k, v in identical.items() if not v]}")


def write_readme(doc: dict) -> None:
    lines = ["# Scale-out on Ray: VGG8B, MNIST, batch 64", "",
             f"Measured on this {doc['machine']} machine at commit {doc['commit']} "
             f"({doc['steps']} steps after one warm-up step; `scripts/bench_scaleout.py`).", "",
             "| mode | images/s | weights after the run |", "|---|---|---|"]
    same = doc["weights_identical_to_one_process"]
    lines += [f"| {k} | {v:.1f} | {'the reference' if k not in same else 'identical' if same[k] else 'DIFFERENT'} |"
              for k, v in doc["images_s"].items()]
    lines += ["", "Per block (one pipeline stage each; the output layer with the last), one BLAS thread:", "",
              "| stage | MACs/image | s/step | activation bytes/step sent on | gradient bytes/step |",
              "|---|---|---|---|---|"]
    for i, r in enumerate(doc["stages"]):
        lines.append(f"| {i}: {', '.join(r['items'])} | {r['macs_per_image']:,} | {r['seconds']:.3f} | "
                     f"{r['activation_bytes']:,} | {r['gradient_bytes']:,} |")
    link = doc["assumed_link"]
    lines += ["", f"Projection (one worker per machine, the measured stage times, an assumed "
                  f"{link['bytes_s'] * 8 / 1e9:.0f} Gbit/s link with {link['latency_s'] * 1e6:.0f} us "
                  "per message, linear speed-up of a stage over its shards):", "",
              "| machines | best stages x shards | images/s | its slowest stage | pure pipeline |",
              "|---|---|---|---|---|"]
    for p, q in zip(doc["projection"], doc["projection_pipeline_only"]):
        lines.append(f"| {p['machines']} | {p['stages']} x {p['shards']} | {p['images_s']:.1f} | "
                     f"{p['slowest_stage']} ({p['stage_seconds'][p['slowest_stage']]:.3f} s) | "
                     f"{q['stages']} stages: {q['images_s']:.1f} |")
    worst = max(range(len(doc["stages"])), key=lambda i: doc["stages"][i]["seconds"])
    lines += ["", f"A pure pipeline stops at {doc['batch'] / doc['stages'][worst]['seconds']:.1f} images/s "
                  f"however many machines it gets: its slowest stage, block {worst} "
                  f"({', '.join(doc['stages'][worst]['items'])}), takes {doc['stages'][worst]['seconds']:.2f} s "
                  "a step on one core. Beyond a few machines the gain comes from splitting the batch "
                  "(data-parallel shards per stage); at 64 machines a batch of 64 leaves one image per "
                  "shard and the all-reduce of the convolution gradients starts to weigh."]
    write_atomic(OUT / "README.md", ("\n".join(lines) + "\n").encode())


def plot(doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(doc["images_s"])
    a.barh(names, [doc["images_s"][k] for k in names], color="#8fb8de")
    a.set_xlabel("images/s on this machine")
    a.set_title("VGG8B MNIST training")
    m = [p["machines"] for p in doc["projection"]]
    b.plot(m, [p["images_s"] for p in doc["projection"]], "o-", label="projected")
    b.plot(m, [m_ * doc["projection"][0]["images_s"] for m_ in m], ":", color="grey", label="linear")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("machines")
    b.set_ylabel("images/s")
    b.set_title("projection")
    b.legend()
    write_figure(OUT / "scaleout.png", fig)
    plt.close(fig)


if __name__ == "__main__":
    main()
