"""Where each benchmark record of the streaming engine lies (benchmarks/engine/), the runs they
record, and the stamp of the commit a record was measured on: what `bench_engine` writes and
`bench_engine_readme` reads."""
from __future__ import annotations

import json
from pathlib import Path

from hw.engine.params import CNN_WEIGHT_BITS, MLP_WEIGHT_BITS
from model.fileio import write_atomic
from model.paths import REPO
from scripts.provenance import commit
from sim.device import ENGINE_DEVICE


OUT = REPO / "benchmarks" / "engine"


RUNS = {"mlp_mnist": 100, "mlp_fmnist": 20}  # config -> steps


MEMORIES = ("ideal", "ddr3")


WIDE = ("mlp_mnist",)  # also run on the engine generated with a 128-bit memory port


def cosim_file(config: str, memory: str, bus: int = 64) -> Path:
    wide = "" if bus == 64 else f"_bus{bus}"
    return OUT / f"cosim_{config}_{RUNS[config]}steps_{memory}{wide}.json"


def cosim_runs() -> list[tuple[str, str, int]]:
    """(config, memory model, bus width) of every recorded co-simulation."""
    return [(c, m, b) for c in RUNS for b in (64, 128) if b == 64 or c in WIDE for m in MEMORIES]


def trained_file(config: str) -> Path:
    return OUT / f"cosim_{config}_{RUNS[config]}steps_ideal_trained.json"


TRAINED = ("mlp_fmnist",)  # from its initial weights, two block activations stay constant for 20 steps

# a CNN whose weights outgrow int16 within its first epoch (widths_<config>_w16.json): the CNN
# engine (24-bit weights), from a checkpoint trained that epoch
W24, W24_STEPS = "cnn_small_mnist", 2


def w24_file() -> Path:
    return OUT / f"cosim_{W24}_w{CNN_WEIGHT_BITS}_{W24_STEPS}steps_b64_ideal_trained.json"


def stamp(out: Path, **extra) -> dict:
    """Add the commit (and `extra`) to a recorded result."""
    res = json.loads(out.read_text()) | {"commit": commit(), **extra}
    write_atomic(out, json.dumps(res, indent=1).encode())
    return res


# CNNs: config -> (batch, steps, test images); the ideal memory
CNN_RUNS = {"engine_cnn_mnist": (16, 50, 256), "cnn_small_mnist": (64, 2, 0)}


VGG = "vgg8b_mnist"
# the paper's CNNs in the performance model (`bench_engine.py model`): VGG8B on its three datasets
# (F-MNIST's and CIFAR-10's with dropout) and VGG11B on CIFAR-10
PAPER_CNNS = (VGG, "vgg8b_fmnist", "vgg8b_cifar10", "vgg11b_cifar10")


def conv_gemms(gemms: dict[str, dict]) -> dict[str, dict]:
    """The convolution GEMMs (forward and weight gradient) of a performance-model record's
    `gemms` (GEMM name -> its cycles and utilization)."""
    return {k: v for k, v in gemms.items()
            if k.startswith("conv") and k.endswith(("/fwd", "/update_fwd"))}


def cnn_file(config: str) -> Path:
    batch, steps, _ = CNN_RUNS[config]
    return OUT / f"cosim_{config}_{steps}steps_b{batch}_ideal.json"


LONG, LONG_STEPS, LONG_SEGMENTS, LONG_TEST = "cnn_small_mnist", 200, 2, 1000


def long_files() -> list[Path]:
    n = LONG_STEPS // LONG_SEGMENTS
    return [OUT / f"cosim_{LONG}_steps{s:03d}-{s + n - 1:03d}_b64_ideal.json"
            for s in range(0, LONG_STEPS, n)]


VGG_RTL_BATCH = 8  # one step at batch 64 is ~1.5 G cycles: about 2 hours of simulation


TARGET_MHZ = 150.0


OFFICIAL_SETS = ("mlp", "mlp_warm1500", "cnn", "cnnx")  # the official implementation's vectors (../shared/refvectors)


def widths_file(config: str, weight_bits: int) -> Path:
    if config == "mlp_mnist" and weight_bits == 16:
        return OUT / "widths.json"
    return OUT / f"widths_{config}_w{weight_bits}.json"


def synth_name(speed: int = ENGINE_DEVICE.speed, weight_bits: int = MLP_WEIGHT_BITS) -> str:
    """The records' name: synth for the target speed grade, synth_speed<G> for another; _w<B>
    for the engine generated with B-bit weights (the CNN engine) instead of the MLPs' int16."""
    name = "synth" if speed == ENGINE_DEVICE.speed else f"synth_speed{speed}"
    return name if weight_bits == MLP_WEIGHT_BITS else f"{name}_w{weight_bits}"


def seed_dir(seed: int, speed: int = ENGINE_DEVICE.speed, weight_bits: int = MLP_WEIGHT_BITS) -> Path:
    return REPO / "build" / "engine" / f"{synth_name(speed, weight_bits)}_seed{seed}"


def pinless_file(seed: int, speed: int) -> Path:
    return OUT / f"routing_pinless_speed{speed}_seed{seed}.json"
