"""Training throughput of the golden model (images/s, batch 64) for the MNIST MLP and VGG8B.

Runs real MNIST batches through `Network.train_step` and records the rate in
`benchmarks/bench_train.json`, with the BLAS thread count and the reference implementation's rate on
the same machine kind (../shared/refvectors/bench_*.json). `--check-exact` also replays the MLP
steps on the pure integer GEMM and asserts identical weights.

    .venv/bin/python scripts/bench_train.py [--mlp-steps 300] [--vgg-steps 3] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from model.config import load_config
from model.fileio import write_atomic
from model.gemm import reference_gemm
from model.paths import REPO, SHARED
from model.train import prepare


def _rate(cfg_name: str, steps: int, warmup: int, data_dir: str, weight_scale: int = 1,
          check_exact: bool = False) -> dict:
    cfg = load_config(REPO / "configs" / f"{cfg_name}.toml")
    ds, net, rng = prepare(cfg, data_dir)
    if weight_scale != 1:  # trained-network magnitudes: forces the float64 / limb GEMM paths
        net.params = {k: (v * weight_scale).astype(np.int32) for k, v in net.params.items()}
    start = {k: v.copy() for k, v in net.params.items()}
    bs = cfg.train.batch_size
    batches = [(ds.train_x[i * bs:(i + 1) * bs], ds.train_y[i * bs:(i + 1) * bs]) for i in range(warmup + steps)]
    for x, y in batches[:warmup]:
        net.train_step(x, y, cfg.train.lr_inv, rng=rng)
    t0 = time.perf_counter()
    for x, y in batches[warmup:]:
        net.train_step(x, y, cfg.train.lr_inv, rng=rng)
    dt = time.perf_counter() - t0
    row = {"config": cfg_name, "batch": bs, "steps": steps, "seconds": round(dt, 3),
           "images_per_s": round(steps * bs / dt, 2), "weight_scale": weight_scale}
    if check_exact:
        fast = net.params
        net.params = start
        with reference_gemm():
            for x, y in batches:
                net.train_step(x, y, cfg.train.lr_inv, rng=rng)
        row["identical_to_integer_gemm"] = all(np.array_equal(fast[k], net.params[k]) for k in fast)
        assert row["identical_to_integer_gemm"], "fast GEMM path diverged from the integer path"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mlp-steps", type=int, default=300)
    ap.add_argument("--vgg-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, help="BLAS threads (default: the library's)")
    ap.add_argument("--data-dir", default=str(SHARED / "datasets"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "bench_train.json"))
    args = ap.parse_args()
    with threadpool_limits(args.threads):
        rows = [_rate("mlp_mnist", args.mlp_steps, 20, args.data_dir, check_exact=True),
                _rate("mlp_mnist", args.mlp_steps, 20, args.data_dir, weight_scale=1000, check_exact=True),
                _rate("vgg8b_mnist", args.vgg_steps, 1, args.data_dir),
                _rate("vgg8b_mnist", args.vgg_steps, 1, args.data_dir, weight_scale=400)]
        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
                for i in threadpool_info()]
    ref = {}
    for name, key in (("bench_mlp.json", "mlp_img_s"), ("bench_vgg8b.json", "vgg8b_img_s")):
        p = SHARED / "refvectors" / name
        if p.exists():
            d = json.loads(p.read_text())
            ref[key] = d.get("train_images_per_s") or np.median([e["train_images_per_s"] for e in d["epochs"]])
    result = {"machine": {"python": platform.python_version(), "numpy": np.__version__, "blas": blas,
                          "cpus": __import__("os").cpu_count()},
              "reference_implementation": ref, "results": rows}
    write_atomic(Path(args.out), json.dumps(result, indent=1, default=float).encode())
    for r in rows:
        print(f"{r['config']:12s} x{r['weight_scale']:<4d} {r['images_per_s']:>10.1f} img/s "
              f"({r['steps']} steps of {r['batch']})")
    print(f"reference implementation: {ref}")


if __name__ == "__main__":
    main()
