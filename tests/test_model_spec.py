"""Network construction against the spec's layer tables (spec 3.2, 5, 7)."""
import pytest

from model.config import load_config
from model.init import kaiming_bound
from model.spec import learning_pool

from conftest import REPO


@pytest.mark.parametrize("fan_in,bound", [(9, 64), (27, 60), (50, 43), (100, 30), (200, 21), (512, 13),
                                          (784, 10), (1024, 9), (1152, 9), (2048, 6), (2304, 6),
                                          (3000, 5), (3072, 5), (3584, 5), (4096, 4), (4608, 4)])
def test_kaiming_bounds(fan_in, bound):
    assert kaiming_bound(fan_in) == bound


def test_vgg8b_mnist_learning_pools_match_table_7_4():
    spec = load_config(REPO / "configs/vgg8b_mnist.toml").build_spec((1, 28, 28))
    blocks = spec.blocks
    got = [(b.pool.kernel, b.pool.padding, b.pred.in_features, b.scaling.factor, b.pred_scaling.factor)
           for b in blocks.values() if b.pool is not None]
    assert got == [((8, 4), (4, 0), 3584, 2304, 917504), ((8, 8), (4, 4), 4096, 294912, 1048576),
                   ((4, 4), (2, 2), 4096, 589824, 1048576), ((8, 4), (4, 2), 4096, 589824, 1048576),
                   ((4, 2), (2, 1), 4096, 1179648, 1048576), ((2, 1), (1, 0), 3072, 1179648, 786432)]
    fc = blocks["linear_block_10"]
    assert (fc.layer.in_features, fc.scaling.factor, spec.output.in_features) == (512, 131072, 1024)
    assert spec.backward_order[:2] == ("linear_block_10", "linear_block_10")  # D8 double update


def test_vgg11b_cifar_pools_unpadded():
    spec = load_config(REPO / "configs/vgg11b_cifar10.toml").build_spec((3, 32, 32))
    pools = [b.pool.kernel for b in spec.blocks.values() if b.pool is not None]
    assert pools == [(8, 4), (8, 4), (8, 4), (8, 8), (4, 4), (8, 4), (4, 2), (4, 2), (2, 1)]
    assert all(b.pool.padding == (0, 0) for b in spec.blocks.values() if b.pool is not None)
    assert sum(l.in_features * l.out_features if hasattr(l, "in_features") else
               l.out_channels * l.in_channels * 9 for l in spec.param_layers()) == 11_926_912


def test_learning_pool_of_cnnx_block_is_padded():
    assert learning_pool(32, 14, 1024) == ((4, 2), (2, 0), 896)


def test_fixing_conv_amp_applies_the_would_be_factors():
    from dataclasses import replace

    cfg = load_config(REPO / "configs/vgg8b_cifar10.toml")
    fixed = replace(cfg, quirks=replace(cfg.quirks, conv_amp_inert=False)).build_spec((3, 32, 32))
    amps = [b.layer.amp // 640 for b in fixed.blocks.values() if b.pool is not None]
    assert amps == [32, 16, 16, 8, 8, 8]
    assert all(b.layer.amp == 640 for b in cfg.build_spec((3, 32, 32)).blocks.values())
