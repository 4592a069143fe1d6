"""The engine's storage widths hold real training: the golden model in "check" mode (raises on the
first value outside its declared width) with int16 weights and int24 deltas. The longer documented
run (several MNIST epochs) is in benchmarks/engine/widths.json (scripts/bench_engine.py widths)."""
from dataclasses import replace

import numpy as np
import pytest

from hw.engine.params import EngineParams
from model.config import load_config
from model.network import Network
from model.numerics import WidthOverflowError, WidthPolicy, Widths, range_report
from model.paths import REPO
from model.preprocess import epoch_permutation
from model.train import prepare


def test_engine_widths_hold_one_epoch():
    p = EngineParams()
    cfg = load_config(REPO / "configs" / "embedded_mlp.toml")
    widths = Widths(weight=p.weight_bits, delta=p.delta_bits)
    cfg = replace(cfg, numerics=replace(cfg.numerics, mode="check", widths=widths))
    ds, net, rng = prepare(cfg, None)
    order = np.arange(len(ds.train_x))[epoch_permutation(rng, len(ds.train_x))]
    bs = cfg.train.batch_size
    for b in range(len(order) // bs):
        rows = order[b * bs:(b + 1) * bs]
        net.train_step(ds.train_x[rows], ds.train_y[rows], cfg.train.lr_inv, rng=rng)
    # check mode raised on nothing; that it looked at every weight and delta tensor:
    rows = range_report(net.policy)
    assert b > 0 and {r["class"] for r in rows} >= {"weight", "delta"}
    assert all(r["bits_needed"] <= r["declared_bits"] for r in rows)
    assert max(int(np.abs(w).max()) for w in net.params.values()) < 1 << (p.weight_bits - 1)


def test_check_mode_catches_weights_beyond_int16():
    """The same check would reject weights the engine cannot store (guards the proof above)."""
    cfg = load_config(REPO / "configs" / "embedded_mlp.toml")
    ds, net, rng = prepare(cfg, None)
    params = {k: v.copy() for k, v in net.params.items()}
    params["linear_encoder_00"][0, 0] = 40000
    policy = WidthPolicy(Widths(weight=16, delta=24), "check")
    net16 = Network(net.spec, params, policy)
    with pytest.raises(WidthOverflowError, match="linear_encoder_00.*16-bit weight"):
        net16.train_step(ds.train_x[:64], ds.train_y[:64], 512)
