"""Write the MNIST subset shipped in model/embedded/mnist-subset/ from a full MNIST folder.

Takes the first --train training and first --test test images (file order) and writes them as
gzipped IDX files with the standard names, so `load_raw("embedded")` reads them like MNIST.

    .venv/bin/python scripts/make_embedded_subset.py --src ../shared/datasets/mnist
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script from anywhere

from model.datasets import EMBEDDED_DIR, MNIST_FILES, load_raw, write_idx  # noqa: E402
from model.numerics import NitroError  # noqa: E402


def make_subset(src: str | Path | None, out: Path, n_train: int, n_test: int) -> list[Path]:
    """Write the four gzipped IDX files of the subset to `out`; returns their paths."""
    raw = load_raw("mnist", src)
    for flag, n, have in (("--train", n_train, len(raw.train_x)), ("--test", n_test, len(raw.test_x))):
        if not 1 <= n <= have:
            raise NitroError(f"{flag} {n}: must be in 1..{have} (images in {raw.source})")
    out.mkdir(parents=True, exist_ok=True)
    arrays = (
        raw.train_x[:n_train, 0],
        raw.train_y[:n_train],
        raw.test_x[:n_test, 0],
        raw.test_y[:n_test],
    )
    paths = [out / f"{stem}.gz" for stem in MNIST_FILES]
    for path, arr in zip(paths, arrays):
        write_idx(path, arr)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", help="full MNIST folder (default: the usual data-directory look-up)")
    ap.add_argument("--out", type=Path, default=EMBEDDED_DIR, help="output folder (default: %(default)s)")
    ap.add_argument("--train", type=int, default=10_000, help="training images to keep (default: %(default)s)")
    ap.add_argument("--test", type=int, default=2_000, help="test images to keep (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        paths = make_subset(args.src, args.out, args.train, args.test)
    except NitroError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in paths)
    for p in paths:
        print(f"{p}  {p.stat().st_size} bytes")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
