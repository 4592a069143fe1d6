"""`nitro sweep`: every (config, seed) trial a Ray task; resumable; the paper's table and a plot.

Each trial trains in its own folder `<out>/<config name>_seed<S>/` (metrics, curves, checkpoint)
and ends by writing `result.json` there. A second call skips trials that have one and resumes the
others from their checkpoints, so killing the driver loses at most the epochs in progress. A trial
that fails is reported in one line and the others go on. The summary (mean +- std of the best test
accuracy per config over its seeds) is `summary.md`, `summary.json` and `summary.png`.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from model.fileio import writable_folder, write_atomic, write_figure
from model.numerics import NitroError

RESULT = "result.json"


@dataclass(frozen=True)
class Trial:
    config_text: str
    config_name: str  # the config's `name`: the summary's row
    seed: int
    digest: str  # of the seeded config: a result or checkpoint of another config is not this trial's
    epochs: int  # the epoch count the trial trains to (--epochs, else the config's)

    @property
    def folder(self) -> str:
        return f"{self.config_name}_seed{self.seed}"


def plan_trials(configs: list[Path], seeds: list[int], data_dir: str | None,
                epochs: int | None = None) -> list[Trial]:
    """Every (config, seed), validated before any work (configs, seeds, distinct names, and the
    data: readable, and holding a batch of each config)."""
    from model.config import load_config, with_seed
    from model.datasets import EMBEDDED, canonical_name, data_dir_for, load_raw
    from model.train import check_sizes

    if len(set(seeds)) != len(seeds):
        raise NitroError(f"--seeds names a seed twice: {' '.join(map(str, seeds))}")
    trials, names, datasets = [], {}, set()
    for path in configs:
        cfg = load_config(path)
        datasets.add(canonical_name(cfg.data.dataset))
        if cfg.name in names:
            raise NitroError(f"configs {names[cfg.name]} and {path} have the same name {cfg.name!r}")
        names[cfg.name] = path
        raw = load_raw(cfg.data.dataset, data_dir_for(cfg.data.dataset, data_dir))  # readable
        check_sizes(cfg, len(raw.train_x), len(raw.test_x))
        for seed in seeds:
            seeded = with_seed(cfg, seed)
            trials.append(Trial(cfg.source, cfg.name, seed, seeded.digest(),
                                epochs if epochs is not None else cfg.train.epochs))
    if data_dir not in (None, EMBEDDED) and datasets == {EMBEDDED}:
        raise NitroError(f"--data-dir {data_dir}: every config's dataset is 'embedded', the MNIST "
                         f"subset in the repository, which none reads from a folder")
    return trials


def run_trial(trial: Trial, out: str, data_dir: str | None) -> dict:
    """One trial, in a Ray worker: train (resuming its checkpoint if any), then write result.json."""
    from model.config import parse_config, with_seed
    from model.datasets import data_dir_for
    from model.train import CHECKPOINT, train

    folder = Path(out) / trial.folder
    cfg = with_seed(parse_config(trial.config_text, trial.config_name), trial.seed)
    t0 = time.perf_counter()
    data = data_dir_for(cfg.data.dataset, data_dir)
    res = train(cfg, folder, data, trial.epochs, resume=(folder / CHECKPOINT).exists(), progress=False)
    result = {"config": trial.config_name, "seed": trial.seed, "config_digest": trial.digest,
              "epochs": trial.epochs, "best_test_acc": res.best_test_acc, "best_epoch": res.best_epoch,
              "epochs_run": res.epochs_run, "seconds": round(time.perf_counter() - t0, 1)}
    write_atomic(folder / RESULT, json.dumps(result, indent=1).encode())
    return result


def finished(out: Path, trial: Trial) -> dict | None:
    """The trial's result, or None when it has yet to run: no result, an unreadable one, or one of
    an earlier, shorter sweep of the same config (the trial then resumes from its checkpoint).
    A result of another config, or of more epochs than asked for, is an error: it is not this
    trial's, and its folder is the user's."""
    f = out / trial.folder / RESULT
    try:
        r = json.loads(f.read_text()) if f.exists() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not (isinstance(r, dict) and isinstance(r.get("best_test_acc"), float)
            and 0 <= r["best_test_acc"] <= 1 and isinstance(r.get("epochs"), int)
            and isinstance(r.get("config_digest"), str)):
        return None
    other = ("another config" if r["config_digest"] != trial.digest
             else f"{r['epochs']} epochs" if r["epochs"] > trial.epochs else None)
    if other:
        raise NitroError(f"{f} is the result of {other}, not of {trial.config_name} seed {trial.seed} "
                         f"at {trial.epochs} epochs: choose another --out")
    return r if r["epochs"] == trial.epochs else None


def sweep(configs: list[Path], seeds: list[int], epochs: int | None, out: Path, data_dir: str | None,
          address: str | None, cpus_per_trial: float, progress: bool) -> int:
    """Run the missing trials on Ray; write the summary; 0 when every trial has a result."""
    from tqdm import tqdm

    from .scaleout import check_task_cpus, ray_session, reachable

    trials = plan_trials(configs, seeds, data_dir, epochs)
    if address is not None:  # ("" too: refused by its format)
        reachable(address)  # before the plan is printed
    out = writable_folder(out)
    summary_is_ours(out)
    data = str(Path(data_dir).resolve()) if data_dir and data_dir != "embedded" else data_dir
    results = {t: r for t in trials if (r := finished(out, t)) is not None}
    failures: dict[Trial, str] = {}
    todo = [t for t in trials if t not in results]
    plan = f"sweep: {len(trials)} trials, {len(results)} finished earlier (skipped), {len(todo)} to run"
    if not todo:
        print(plan)
    else:
        with ray_session(address) as ray:
            check_task_cpus(ray, cpus_per_trial, "--cpus-per-trial", cluster=bool(address))
            print(plan)  # once the trials can run
            threads = str(max(1, int(cpus_per_trial)))
            task = ray.remote(run_trial).options(
                num_cpus=cpus_per_trial, max_retries=0,
                runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}})
            refs = {task.remote(t, str(out.resolve()), data): t for t in todo}
            bar = tqdm(total=len(trials), initial=len(results), desc="sweep", unit="trial",
                       disable=not progress, dynamic_ncols=True)
            while refs:
                bar.set_postfix(done=len(results), pending=len(refs), failed=len(failures))
                ready, _ = ray.wait(list(refs), num_returns=1)
                trial = refs.pop(ready[0])
                try:
                    results[trial] = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    failures[trial] = str(cause).strip().splitlines()[-1]
                    tqdm.write(f"sweep: trial {trial.folder} failed: {failures[trial]}")
                bar.update(1)
            bar.close()
    write_summary(out, trials, results, failures)
    print(f"sweep: {len(results)} of {len(trials)} trials done, {len(failures)} failed; summary in "
          f"{out / 'summary.md'}")
    return 0 if not failures else 1


def summarize(trials: list[Trial], results: dict) -> list[dict]:
    rows = []
    for name in dict.fromkeys(t.config_name for t in trials):
        accs = [100 * results[t]["best_test_acc"] for t in trials if t.config_name == name and t in results]
        rows.append({"config": name, "seeds": len(accs), "mean": statistics.fmean(accs) if accs else None,
                     "std": statistics.stdev(accs) if len(accs) > 1 else None, "best_test_acc": accs})
    return rows


SUMMARY_FILES = ("summary.md", "summary.json", "summary.png")


def summary_is_ours(out: Path) -> None:
    """A sweep rerun into its folder rewrites its summary; summary files that an earlier sweep did
    not write (no summary.json of its shape beside them) are the user's and are kept."""
    present = [name for name in SUMMARY_FILES if (out / name).exists()]
    if not present:
        return
    try:
        doc = json.loads((out / "summary.json").read_text())
        ours = isinstance(doc, dict) and {"rows", "trials", "failed", "missing"} <= set(doc)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ours = False
    if not ours or not all((out / name).is_file() for name in present):
        raise NitroError(f"{out} holds {', '.join(present)} that nitro sweep did not write: choose "
                         f"another --out")


def write_summary(out: Path, trials: list[Trial], results: dict, failures: dict) -> None:
    rows = summarize(trials, results)
    md = ["# Sweep: best test accuracy per config (mean +- std over seeds)", "",
          "| config | seeds | best test accuracy (%) |", "|---|---|---|"]
    for r in rows:
        acc = ("no result" if r["mean"] is None else f"{r['mean']:.2f}" + (
            f" +- {r['std']:.2f}" if r["std"] is not None else " (one seed: no spread)"))
        md.append(f"| {r['config']} | {r['seeds']} | {acc} |")
    if failures:
        md += ["", "Failed trials:", *(f"- {t.folder}: {why}" for t, why in failures.items())]
    write_atomic(out / "summary.md", ("\n".join(md) + "\n").encode())
    doc = {"rows": rows, "trials": [results[t] for t in trials if t in results],
           "failed": {t.folder: why for t, why in failures.items()},
           "missing": [t.folder for t in trials if t not in results and t not in failures]}
    write_atomic(out / "summary.json", json.dumps(doc, indent=1).encode())
    plot_summary(out / "summary.png", rows)


def plot_summary(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["mean"] is not None]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(rows) + 2), 4))
    x = range(len(rows))
    ax.bar(x, [r["mean"] for r in rows], yerr=[r["std"] or 0.0 for r in rows], capsize=6, color="#8fb8de",
           label="mean +- std")
    for i, r in enumerate(rows):
        ax.plot([i] * len(r["best_test_acc"]), r["best_test_acc"], "k.", label="seeds" if i == 0 else None)
    ax.set_xticks(list(x), [r["config"] for r in rows], rotation=15)
    ax.set_ylabel("best test accuracy (%)")
    ax.set_title("nitro sweep")
    ax.grid(axis="y", alpha=0.3)
    if rows:
        ax.legend()
    write_figure(path, fig)
    plt.close(fig)
