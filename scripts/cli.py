"""`nitro` command line: train, evaluate, conformance, RTL generation, simulation, synthesis, flow."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from model.numerics import NitroError


def _train(args: argparse.Namespace) -> int:
    from model.config import load_config
    from model.train import train

    cfg = load_config(args.config)
    if args.seed is not None:
        cfg = replace(cfg, train=replace(cfg.train, seed=args.seed), name=f"{cfg.name}_seed{args.seed}")
    out = Path(args.out or Path("runs") / cfg.name)
    res = train(cfg, out, args.data_dir, epochs=args.epochs, resume=args.resume,
                progress=not args.no_progress)
    print(f"{cfg.name}: best test accuracy {100 * res.best_test_acc:.2f}% at epoch {res.best_epoch} "
          f"({res.epochs_run} epochs); results in {out}/ (metrics.csv, metrics.json, curves.png, "
          f"checkpoint.npz)")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from model.checkpoint import load_checkpoint
    from model.config import parse_config
    from model.network import Network
    from model.train import evaluate
    from model.datasets import load_raw
    from model.preprocess import preprocess
    import numpy as np

    ck = load_checkpoint(Path(args.checkpoint))
    cfg = parse_config(ck.config_text, "checkpoint")
    ds = preprocess(load_raw(cfg.data.dataset, args.data_dir), np.random.RandomState(cfg.train.seed),
                    onehot_value=cfg.data.onehot_value)
    net = Network(cfg.build_spec(tuple(ds.test_x.shape[1:])), ck.params, cfg.policy())
    acc = evaluate(net, ds.test_x, ds.test_labels, cfg.train.eval_batch)
    print(f"{cfg.name} after epoch {ck.epoch}: test accuracy {100 * acc:.2f}% "
          f"({(len(ds.test_x) // cfg.train.eval_batch) * cfg.train.eval_batch} images)")
    return 0


def _conform(args: argparse.Namespace) -> int:
    from model.conform import run_conformance

    first = None

    def show(rep) -> None:
        nonlocal first
        status = "all match" if not rep.mismatches else f"{len(rep.mismatches)} differ"
        print(f"{args.tag} step {rep.step}: {rep.arrays} arrays, {status}")
        if rep.mismatches and first is None:
            first = rep.mismatches[0]

    run_conformance(args.vector_dir, args.tag, show)
    if first is not None:
        print(first)
        return 1
    print(f"{args.tag}: every array of every step matches bit for bit")
    return 0


def _flow(args: argparse.Namespace) -> int:
    from scripts.flow import DEFAULT_CONFIG, run_flow

    ok = run_flow(Path(args.out), Path(args.config or DEFAULT_CONFIG), args.data_dir, args.epochs,
                  progress=not args.no_progress)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nitro", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a config on the golden model")
    t.add_argument("--config", required=True, help="experiment TOML (see configs/)")
    t.add_argument("--epochs", type=int, help="stop after this many epochs (default: the config's)")
    t.add_argument("--seed", type=int, help="override the config's seed")
    t.add_argument("--data-dir", help="dataset folder (else $NITRO_DATA_DIR, /usr/share/datasets)")
    t.add_argument("--out", help="output folder (default runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="test accuracy of a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data-dir")
    e.set_defaults(func=_eval)

    c = sub.add_parser("conform", help="replay reference vectors and compare every array bit for bit")
    c.add_argument("vector_dir")
    c.add_argument("tag", help="vector set name: files TAG_init.npz, TAG_data.npz, TAG_stepK.npz, ...")
    c.set_defaults(func=_conform)
    f = sub.add_parser("flow", help="the co-design flow: train, conform, RTL, simulate, report")
    f.add_argument("--config", help="experiment TOML (default: configs/embedded_mlp.toml, shipped data)")
    f.add_argument("--data-dir")
    f.add_argument("--epochs", type=int)
    f.add_argument("--out", default="runs/flow", help="output folder (default runs/flow)")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_flow)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NitroError as exc:
        print(f"nitro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nitro: interrupted (the last checkpoint is intact)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
