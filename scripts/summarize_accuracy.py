"""Summarise the recorded full training runs in benchmarks/accuracy/ (one folder per run, written by
`nitro train --out benchmarks/accuracy/<config>_seed<S>`): best accuracy per run, mean per
experiment, the paper's figure and target, a combined plot, and a per-epoch comparison with the
reference implementation's own CPU run (../shared/refvectors/bench_mlp.json) where one exists.

    .venv/bin/python scripts/summarize_accuracy.py
"""
from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from model.fileio import write_atomic
from model.paths import REPO, SHARED_VECTORS

ACC = REPO / "benchmarks" / "accuracy"
REFERENCE_RUN = SHARED_VECTORS / "bench_mlp.json"
# Paper table (spec 8.1) and this project's accuracy targets.
PAPER = {"mlp_mnist": 97.36, "mlp_fmnist": 88.66, "cnn_small_mnist": None}
TARGET = {"mlp_mnist": 97.2, "mlp_fmnist": 88.5, "cnn_small_mnist": 98.5}


def _runs() -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(ACC.glob("*/metrics.json")):
        m = re.fullmatch(r"(.+)_seed(\d+)", path.parent.name)
        if not m:
            continue
        doc = json.loads(path.read_text())
        runs[m.group(1)].append({"seed": int(m.group(2)), **doc})
    return runs


def _reference_match(doc: dict) -> str:
    if not REFERENCE_RUN.exists():
        return "reference run not available"
    ref = json.loads(REFERENCE_RUN.read_text())["epochs"]
    ours = doc["epochs"]
    same = len(ref) == len(ours) and all(
        r["train_acc"] == o["train_acc"] and r["test_acc_ref"] == o["test_acc"] and r["lr_inv"] == o["lr_inv"]
        for r, o in zip(ref, ours))
    return (f"all {len(ref)} epochs identical to the reference implementation's CPU run (train and test "
            f"accuracy, lr_inv)" if same else "differs from the reference implementation's run")


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs()
    summary, lines = {}, ["# Recorded training runs (golden model, CPU)", "",
                          "| experiment | seed | best test acc | at epoch | epochs run | train s | target | paper |",
                          "|---|---|---|---|---|---|---|---|"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rs in sorted(runs.items()):
        accs = [100 * r["best"]["test_acc"] for r in rs]
        for r in rs:
            train_s = sum(e["train_s"] for e in r["epochs"])
            lines.append(f"| {name} | {r['seed']} | {100 * r['best']['test_acc']:.2f} % | {r['best']['epoch']} | "
                         f"{len(r['epochs'])} | {train_s:.0f} | {TARGET.get(name, '-')} | {PAPER.get(name) or '-'} |")
            ax.plot([e["epoch"] for e in r["epochs"]], [100 * e["test_acc"] for e in r["epochs"]],
                    label=f"{name} seed {r['seed']}")
        summary[name] = {"seeds": [r["seed"] for r in rs], "best_test_acc": accs,
                         "mean": float(np.mean(accs)), "min": float(np.min(accs)),
                         "target": TARGET.get(name), "paper": PAPER.get(name)}
        if name == "mlp_mnist":
            seed42 = next((r for r in rs if r["seed"] == 42), None)
            if seed42:
                summary[name]["seed42_vs_reference"] = _reference_match(seed42)
    lines.append("")
    for name, s in summary.items():
        lines.append(f"- **{name}**: mean of {len(s['seeds'])} seed(s) {s['mean']:.2f} %, min {s['min']:.2f} % "
                     f"(target ≥ {s['target']} %)" + (f"; seed 42: {s['seed42_vs_reference']}"
                                                      if "seed42_vs_reference" in s else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(80, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ACC / "test_accuracy.png", dpi=110)
    plt.close(fig)
    lines.append("\n![test accuracy per epoch](test_accuracy.png)\n")
    write_atomic(ACC / "summary.json", json.dumps(summary, indent=1).encode())
    write_atomic(ACC / "README.md", "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
