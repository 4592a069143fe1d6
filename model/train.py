"""The training loop of the reference (`train_test_experiment`, spec 6.4), with checkpoints,
metrics (CSV/JSON), training curves (PNG) and exact resume.

One `numpy.random.RandomState(seed)` drives every draw in the reference CPU order: dataset
shuffle, weight init, then per epoch the reshuffle, augmentation and dropout. With it the initial
weights equal the reference's CPU vectors bit for bit.
"""
from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from .checkpoint import BestEpoch, Checkpoint, EpochRecord, load_checkpoint_to_resume, save_checkpoint
from .config import ExperimentConfig, load_config
from .datasets import load_raw
from .fileio import writable_folder, write_atomic, write_figure
from .init import init_params
from .network import Network
from .numerics import NitroError, WidthPolicy, range_report
from .optim import PlateauState
from .parallel import LocalStepper, Stepper
from .preprocess import IntegerDataset, augment_batch, epoch_permutation, preprocess

CHECKPOINT = "checkpoint.npz"
OUTPUTS = (CHECKPOINT, "metrics.csv", "metrics.json", "curves.png")  # what a run writes into its folder


@dataclass
class TrainResult:
    best_test_acc: float
    best_epoch: int
    epochs_run: int
    history: list[EpochRecord]
    network: Network


def evaluate(net: Network, x: np.ndarray, labels: np.ndarray, batch: int = 64) -> float:
    """Reference test metric: accuracy over fdiv(N, batch) full batches (first-argmax predictions)."""
    n = (len(x) // batch) * batch
    if n == 0:
        raise NitroError(f"test set of {len(x)} images is smaller than one evaluation batch ({batch})")
    pred = np.argmax(net.predict(x[:n], batch=batch), axis=1)
    return float(np.count_nonzero(pred == labels[:n]) / n)


def load_data(cfg: ExperimentConfig, data_dir: str | Path | None) -> tuple[IntegerDataset, np.random.RandomState]:
    """The run's preprocessed data, and its random stream after preprocessing (the weights come next)."""
    rng = np.random.RandomState(cfg.train.seed)
    return preprocess(load_raw(cfg.data.dataset, data_dir), rng, onehot_value=cfg.data.onehot_value), rng


def prepare(cfg: ExperimentConfig, data_dir: str | Path | None) -> tuple[IntegerDataset, Network, np.random.RandomState]:
    """Load and preprocess the data, build the network and draw its initial weights."""
    ds, rng = load_data(cfg, data_dir)
    spec = cfg.build_spec(tuple(ds.train_x.shape[1:]))
    net = Network(spec, init_params(spec, rng), cfg.policy())
    return ds, net, rng


def start_checkpoint(cfg: ExperimentConfig, params: dict[str, np.ndarray] | None = None,
                     data_dir: str | Path | None = None, scale: int = 1) -> Checkpoint:
    """What a fresh run of `cfg` holds before its first epoch, with `params` for its weights (by
    default its initial weights x `scale`): a checkpoint that starts another tool from chosen
    weights (`nitro cosim --checkpoint`)."""
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1 or (
            params is not None and scale != 1):
        raise NitroError(f"start_checkpoint: scale must be a positive integer for the initial "
                         f"weights (not with params), got {scale!r}")
    ds, net, rng = prepare(cfg, data_dir)
    if params is None:
        params = {k: v * scale for k, v in net.params.items()}
    return Checkpoint(0, params, rng.get_state(), _state(cfg.make_schedule(), BestEpoch(), [], {}, ds),
                      cfg.source, cfg.digest(), np.arange(len(ds.train_x)))


def save_start_checkpoint(config: str | Path, path: Path, data_dir: str | Path | None = None,
                          scale: int = 1) -> Path:
    """`path`: the config file's `start_checkpoint` holding its initial weights x `scale`."""
    save_checkpoint(path, start_checkpoint(load_config(config), data_dir=data_dir, scale=scale))
    return path


def _state(schedule, best: BestEpoch, history: list[EpochRecord], wraps, ds: IntegerDataset) -> dict:
    return {
        "data": ds.digest,
        "lr_inv": schedule.lr_inv,
        "plateau": vars(schedule.plateau), "stopper": vars(schedule.stopper),
        "best": asdict(best), "history": [asdict(r) for r in history],
        "wraps": [[layer, tensor, n] for (layer, tensor), n in sorted(wraps.items())],
    }


def prepare_output(out: Path, resume: bool, force: bool = False) -> None:
    """The run folder, checked before any work: a writable folder, holding no earlier run's outputs
    unless resuming (or `force`)."""
    writable_folder(out)
    for name in OUTPUTS:
        if (out / name).exists() and not (out / name).is_file():
            raise NitroError(f"{out / name} is not a file: the run writes its {name} there")
    if resume:
        if not (out / CHECKPOINT).exists():
            raise NitroError(f"--resume: no {CHECKPOINT} in {out} to continue")
        return
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not force:
        hint = " pass --resume to continue it," if CHECKPOINT in present else ""
        raise NitroError(f"{out} already holds {', '.join(present)}:{hint} choose another --out, or pass "
                         f"--force to overwrite")


def check_sizes(cfg: ExperimentConfig, n_train: int, n_test: int, batch: int | None = None) -> None:
    """Data sizes (images in the training and test sets) against batch sizes, before the first
    step; `batch`: the one given on the command line (--batch) instead of the config's."""
    b, name = (cfg.train.batch_size, "train.batch_size =") if batch is None else (batch, "--batch")
    if n_train < b:
        raise NitroError(f"training set ({n_train} images) is smaller than one batch ({name} {b})")
    if n_test < cfg.train.eval_batch:
        raise NitroError(f"test set ({n_test} images) is smaller than one evaluation batch "
                         f"(train.eval_batch = {cfg.train.eval_batch})")


def train(cfg: ExperimentConfig, out_dir: str | Path, data_dir: str | Path | None = None,
          epochs: int | None = None, resume: bool = False, progress: bool = True,
          force: bool = False, make_stepper: Callable[[Network, int], Stepper] | None = None) -> TrainResult:
    """Train `cfg`, writing checkpoint, metrics and curves into `out_dir` after every epoch.

    make_stepper(net, steps): how training steps run, given the most steps the run has left (before
    an early stop); default: in this process; `model.parallel` spreads them over workers with the
    same result."""
    out = Path(out_dir)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= 0):
        raise NitroError(f"--epochs must be a positive integer, got {epochs!r}")
    prepare_output(out, resume, force)
    ck_path = out / CHECKPOINT
    ck = load_checkpoint_to_resume(ck_path, cfg) if resume else None
    total = cfg.train.epochs if epochs is None else epochs
    if ck is not None and ck.epoch > total:
        raise NitroError(f"{ck_path} has trained {ck.epoch} epochs already, more than the {total} "
                         f"asked for: continuing it needs at least {ck.epoch} epochs")
    ds, net, rng = prepare(cfg, data_dir)
    check_sizes(cfg, len(ds.train_x), len(ds.test_x))
    schedule = cfg.make_schedule()
    history: list[EpochRecord] = []
    best = BestEpoch()
    start = 0
    order = np.arange(len(ds.train_x))
    if ck is not None:
        net = Network(net.spec, ck.params, cfg.policy())
        rng.set_state(ck.rng_state)
        schedule.lr_inv = ck.state["lr_inv"]
        schedule.plateau = PlateauState(**ck.state["plateau"])
        schedule.stopper = PlateauState(**ck.state["stopper"])
        best, start = BestEpoch(**ck.state["best"]), ck.epoch
        history = [EpochRecord(**row) for row in ck.state["history"]]
        if ck.order.shape != order.shape:
            raise NitroError(f"checkpoint {ck_path} was trained on {len(ck.order)} images, this data has {len(order)}")
        if ck.state.get("data", ds.digest) != ds.digest:  # an older checkpoint holds no digest
            raise NitroError(f"{ck_path} was trained on other images or labels than these (data "
                             f"digest {ck.state['data']}, these {ds.digest}): give the data of the "
                             f"run it continues (--data-dir), or start over (--force)")
        order = ck.order
        for layer, tensor, n in ck.state["wraps"]:
            net.policy.wraps[(layer, tensor)] = n
        if history and history[-1].stopped:
            start = total  # nothing left to do
    steps_left = (total - start) * batches_per_epoch(cfg, ds)
    stepper = make_stepper(net, steps_left) if make_stepper else LocalStepper(net)
    try:
        best = _epochs(cfg, out, ds, net, rng, schedule, stepper, order, best, history,
                       range(start + 1, total + 1), progress)
    finally:
        stepper.close()
    return TrainResult(best.test_acc, best.epoch, len(history), history, net)


def batches_per_epoch(cfg: ExperimentConfig, ds: IntegerDataset) -> int:
    """Whole batches only: the reference drops an epoch's last partial batch."""
    return len(ds.train_x) // cfg.train.batch_size


def epoch_batches(cfg: ExperimentConfig, ds: IntegerDataset, order: np.ndarray,
                  rng: np.random.RandomState):
    """An epoch's training batches (x, y) in `order` (shuffled already), augmented as configured
    (drawing from `rng` before each batch's step, as the reference does)."""
    bs = cfg.train.batch_size
    for b in range(batches_per_epoch(cfg, ds)):
        rows = order[b * bs:(b + 1) * bs]
        x = ds.train_x[rows]
        if cfg.data.crop_padding or cfg.data.flip:
            x = augment_batch(x, rng, cfg.data.crop_padding, cfg.data.flip)
        yield x, ds.train_y[rows]


def _epochs(cfg, out, ds, net, rng, schedule, stepper, order, best, history, epochs, progress) -> BestEpoch:
    """The epoch loop (shuffle, augment, step, evaluate, schedule, checkpoint, metrics); appends to
    `history` and returns the best epoch's record."""
    n_batches = batches_per_epoch(cfg, ds)
    total = epochs.stop - 1
    for epoch in epochs:
        lr_inv = schedule.lr_inv
        order = order[epoch_permutation(rng, len(order))]
        t0, correct, seen = time.perf_counter(), 0, 0
        bar = tqdm(epoch_batches(cfg, ds, order, rng), total=n_batches, desc=f"epoch {epoch}/{total}",
                   unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
        for b, (x, y) in enumerate(bar):
            correct, seen = correct + stepper.step(x, y, lr_inv, rng), seen + len(y)
            if b % 20 == 0 or b == n_batches - 1:
                bar.set_postfix(acc=f"{correct / seen:.4f}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        correct += stepper.drain()
        stepper.sync(net)
        train_s = time.perf_counter() - t0
        test_acc = evaluate(net, ds.test_x, ds.test_labels, cfg.train.eval_batch)
        if test_acc > best.test_acc:
            best = BestEpoch(test_acc, correct / seen, epoch)
        stop = schedule.end_epoch(test_acc)
        row = EpochRecord(epoch, lr_inv, correct / seen, test_acc, round(train_s, 3),
                          round(seen / train_s, 1), int(sum(net.policy.wraps.values())), stop)
        history.append(row)
        tqdm.write(f"epoch {epoch}: train {row.train_acc:.4f}  test {test_acc:.4f}  "
                   f"lr_inv {lr_inv}  {row.train_img_s:.0f} img/s")  # also without the bar
        ck = Checkpoint(epoch, net.params, rng.get_state(), _state(schedule, best, history, net.policy.wraps, ds),
                        cfg.source, cfg.digest(), order)
        save_checkpoint(out / CHECKPOINT, ck)
        write_metrics(out, history, best, cfg.name, net.policy)
        if stop:
            break
    return best


def write_metrics(out: Path, history: list[EpochRecord], best: BestEpoch, name: str,
                  policy: WidthPolicy) -> None:
    """metrics.csv, metrics.json and curves.png, each written atomically."""
    if not history:
        return
    rows = [asdict(r) for r in history]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[f.name for f in fields(EpochRecord)])
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "metrics.csv", buf.getvalue().encode())
    doc = {"name": name, "best": asdict(best), "epochs": rows,
           "wraps": {f"{layer}/{tensor}": n for (layer, tensor), n in sorted(policy.wraps.items())},
           "ranges": range_report(policy)}
    write_atomic(out / "metrics.json", json.dumps(doc, indent=1).encode())
    plot_curves(out / "curves.png", history, name)


def plot_curves(path: Path, history: list[EpochRecord], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ep, [100 * r.train_acc for r in history], label="train (training-mode forward)")
    ax.plot(ep, [100 * r.test_acc for r in history], label="test")
    for r0, r1 in zip(history, history[1:]):
        if r1.lr_inv != r0.lr_inv:
            ax.axvline(r1.epoch, color="grey", ls=":", lw=1)
    ax.set_xlabel("epoch (dotted: lr_inv x3)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    write_figure(path, fig)
    plt.close(fig)
