"""Forward pass, training step and prediction of a NITRO-D network (spec 3.3-3.8).

`Network` holds the spec, the int32 weights and the width policy. `train_step` optionally records
every intermediate tensor under the reference's trace names (`fwd/<layer>`, `bwd_in/<layer>`, ...,
with `@2` for a second execution) so that conformance checks compare key by key.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layers as L
from .numerics import NitroError, WidthPolicy
from .optim import integer_sgd_update, sgd_divisor
from .spec import Block, Conv2d, Dropout, Flatten, Linear, MaxPool2d, NetworkSpec

INT8_MIN = -128


class Trace(dict):
    """Named tensors of one step; a repeated name gets the suffix @2, @3, ..."""

    def put(self, key: str, value) -> None:
        name, n = key, 2
        while name in self:
            name, n = f"{key}@{n}", n + 1
        self[name] = np.array(value, copy=True)


@dataclass
class StepResult:
    y_hat: np.ndarray  # network output (B, classes) int8, training-mode forward
    correct: int  # argmax(y_hat) == argmax(y), counted before the updates


@dataclass
class _BlockCache:
    x_in: np.ndarray  # block input (linear) or im2col patches (conv)
    s: np.ndarray  # NITRO-ReLU input (int8)
    a: np.ndarray  # block output snapshot (int8)


class Network:
    """A NITRO-D network: spec + weights + declared widths."""

    def __init__(self, spec: NetworkSpec, params: dict[str, np.ndarray],
                 policy: WidthPolicy | None = None) -> None:
        self.spec = spec
        self.policy = policy or WidthPolicy()
        self.params: dict[str, np.ndarray] = {}
        self.layers = {layer.name: layer for layer in spec.param_layers()}
        for layer in spec.param_layers():
            if layer.name not in params:
                raise NitroError(f"missing weights for layer {layer.name!r}")
            w = np.asarray(params[layer.name])
            if w.shape != layer.weight_shape:
                raise NitroError(
                    f"weights of {layer.name!r} have shape {w.shape}, expected {layer.weight_shape}"
                )
            if not np.issubdtype(w.dtype, np.integer):
                raise NitroError(f"weights of {layer.name!r} must be integers, got {w.dtype}")
            self.params[layer.name] = w.astype(np.int32)
        extra = set(params) - set(self.params)
        if extra:
            raise NitroError(f"weights given for unknown layers: {sorted(extra)}")

    # ---- building blocks -------------------------------------------------------------------

    def _check_input(self, x: np.ndarray) -> None:
        want = self.spec.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(want):
            raise NitroError(f"input batch must have shape (B, {', '.join(map(str, want))}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.integer) or x.dtype.itemsize > 1:
            raise NitroError(f"input batch must be int8, got {x.dtype}")

    def _gemm_forward(self, layer: Linear | Conv2d, h: np.ndarray, trace: Trace | None):
        w = self.params[layer.name]
        if isinstance(layer, Conv2d):
            z, ctx = L.conv2d_forward(h, w, layer.padding)
        else:
            z, ctx = L.linear_forward(h, w), h
        z = self.policy.narrow(z, "accumulator", layer.name, "output")
        if trace is not None:
            trace.put(f"fwd/{layer.name}", z)
        return z, ctx

    def _scale(self, layer, z, trace):
        s = self.policy.narrow(L.nitro_scaling(z, layer.factor), "activation", layer.name, "output")
        if trace is not None:
            trace.put(f"fwd/{layer.name}", s)
        return s

    def _update(self, layer: Linear | Conv2d, grad: np.ndarray, lr_inv: int, trace: Trace | None,
                policy: WidthPolicy):
        g = policy.narrow(grad, "gradient", layer.name, "weight gradient")
        w_new, u = integer_sgd_update(self.params[layer.name], g, sgd_divisor(lr_inv, layer.amp),
                                      layer.decay_inv)
        u = policy.narrow(u, "weight", layer.name, "weight update")
        self.params[layer.name] = policy.narrow(w_new, "weight", layer.name, "weight")
        if trace is not None:
            trace.put(f"wgrad/{layer.name}", g)
            trace.put(f"wupd/{layer.name}", u)

    # ---- forward ---------------------------------------------------------------------------

    def forward(self, x: np.ndarray, train: bool = False, rng: np.random.RandomState | None = None,
                trace: Trace | None = None, keep: bool = False, masks: dict | None = None):
        """Returns (y_hat int8, output-layer input, per-block caches when training or `keep`).

        Training draws each dropout mask from `rng` in forward order, unless `masks` (dropout layer
        name -> 0/1 mask, as `draw_masks` draws them) gives them."""
        self._check_input(x)
        caches: dict[str, _BlockCache] = {}
        h = self.forward_items(x, self.spec.items, train=train, rng=rng, masks=masks, trace=trace,
                               caches=caches if train or keep else None)
        return self.output_forward(h, trace), h, caches

    def forward_items(self, h: np.ndarray, items, *, train: bool = False,
                      rng: np.random.RandomState | None = None, masks: dict | None = None,
                      trace: Trace | None = None, caches: dict | None = None) -> np.ndarray:
        """Run `items` (a contiguous part of spec.items) on `h`; block caches go into `caches`."""
        for it in items:
            if isinstance(it, Block):
                z, ctx = self._gemm_forward(it.layer, h, trace)
                s = self._scale(it.scaling, z, trace)
                h = self.policy.narrow(L.nitro_relu_forward(s, it.relu.slope_inv), "activation",
                                       it.relu.name, "output")
                if trace is not None:
                    trace.put(f"fwd/{it.relu.name}", h)
                if caches is not None:
                    caches[it.name] = _BlockCache(ctx, s, h)
            elif isinstance(it, MaxPool2d):
                h, _ = L.maxpool_forward(h, it.kernel, it.padding, self._pad_value())
                if trace is not None:
                    trace.put(f"fwd/{it.name}", h)
            elif isinstance(it, Flatten):
                h = h.reshape(h.shape[0], -1)
                if trace is not None:
                    trace.put(f"fwd/{it.name}", h)
            elif isinstance(it, Dropout) and train:
                if masks is not None:
                    mask = masks[it.name]
                elif rng is None:
                    raise NitroError("training with dropout needs an RNG")
                else:
                    mask = rng.binomial(1, 1.0 - it.rate, size=h.shape)
                h = L.dropout_forward(h, mask, it.rate)
                if trace is not None:
                    trace.put(f"fwd/{it.name}", h)
        return h

    def output_forward(self, h: np.ndarray, trace: Trace | None = None) -> np.ndarray:
        z, _ = self._gemm_forward(self.spec.output, h, trace)
        return self._scale(self.spec.output_scaling, z, trace)

    def dropout_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every dropout layer's input, in forward order."""
        shapes, h = {}, np.zeros((1, *self.spec.input_shape), np.int8)
        for it in self.spec.items:
            if isinstance(it, Dropout):
                shapes[it.name] = h.shape[1:]
            else:
                h = self.forward_items(h, (it,))
        return shapes

    def draw_masks(self, batch: int, rng: np.random.RandomState) -> dict[str, np.ndarray]:
        """The dropout masks of one training step, drawn exactly as `forward` draws them."""
        rates = {it.name: it.rate for it in self.spec.items if isinstance(it, Dropout)}
        return {name: rng.binomial(1, 1.0 - rates[name], size=(batch, *shape))
                for name, shape in self.dropout_shapes().items()}

    def _pad_value(self) -> int:
        # The reference pads with INT32_MIN cast to int8, i.e. 0 (quirk D9); -128 is the fix (-inf).
        return 0 if self.spec.quirks.maxpool_pad_zero else INT8_MIN

    def _pred_forward(self, blk: Block, a: np.ndarray, trace: Trace | None):
        p, arg = a, None
        if blk.pool is not None:
            p, arg = L.maxpool_forward(p, blk.pool.kernel, blk.pool.padding, self._pad_value())
            if trace is not None:
                trace.put(f"fwd/{blk.pool.name}", p)
        pooled_shape = p.shape
        if blk.flatten is not None:
            p = p.reshape(p.shape[0], -1)
            if trace is not None:
                trace.put(f"fwd/{blk.flatten.name}", p)
        z, _ = self._gemm_forward(blk.pred, p, trace)
        return self._scale(blk.pred_scaling, z, trace), p, arg, pooled_shape

    # ---- training --------------------------------------------------------------------------

    def _loss_grad(self, y_hat, y, key: str, trace: Trace | None) -> np.ndarray:
        layer = self.spec.output if key == "output" else self.spec.blocks[key].pred
        e = self.policy.narrow(L.loss_gradient(y_hat, y, self.spec.quirks.loss_grad_wrap), "loss_grad",
                               layer.name, "loss gradient")
        if trace is not None:
            trace.put(f"loss_grad/{key}", e)
        return e

    def block_gradients(self, blk: Block, cache: _BlockCache, y: np.ndarray,
                        trace: Trace | None = None) -> dict[str, np.ndarray]:
        """The exact (int64, not yet narrowed) weight gradients of a block's learning layer and
        layer from its local loss. Both use the weights before this step's update, so a caller may
        sum them over shards of the batch before `apply_gradients`."""
        y_hat, p, arg, pooled_shape = self._pred_forward(blk, cache.a, trace)
        e = self._loss_grad(y_hat, y, blk.name, trace)
        if trace is not None:
            trace.put(f"loss/{blk.name}", L.rss_loss_reference(y_hat, y))
            for key in (f"bwd_in/{blk.pred_scaling.name}", f"bwd_out/{blk.pred_scaling.name}",
                        f"bwd_in/{blk.pred.name}"):
                trace.put(key, e)
        w_pred = self.params[blk.pred.name]
        delta = self.policy.narrow(L.linear_input_grad(e, w_pred), "delta", blk.pred.name, "input delta")
        grads = {blk.pred.name: L.linear_weight_grad(e, p)}
        if trace is not None:
            trace.put(f"bwd_out/{blk.pred.name}", delta)
        if blk.flatten is not None:
            if trace is not None:
                trace.put(f"bwd_in/{blk.flatten.name}", delta)
            delta = delta.reshape(pooled_shape)
            if trace is not None:
                trace.put(f"bwd_out/{blk.flatten.name}", delta)
        if blk.pool is not None:
            if trace is not None:
                trace.put(f"bwd_in/{blk.pool.name}", delta)
            delta = L.maxpool_backward(delta, arg, cache.a.shape, blk.pool.kernel, blk.pool.padding)
            if trace is not None:
                trace.put(f"bwd_out/{blk.pool.name}", delta)
        if trace is not None:
            trace.put(f"bwd_in/{blk.relu.name}", delta)
        delta = L.nitro_relu_backward(delta, cache.s, blk.relu.slope_inv)
        if trace is not None:
            # Scaling backward is the identity (spec 2.3).
            for key in (f"bwd_out/{blk.relu.name}", f"bwd_in/{blk.scaling.name}",
                        f"bwd_out/{blk.scaling.name}", f"bwd_in/{blk.layer.name}"):
                trace.put(key, delta)
        layer = blk.layer
        if isinstance(layer, Conv2d):
            grads[layer.name] = L.conv2d_weight_grad(delta, cache.x_in, layer.weight_shape)
        else:
            grads[layer.name] = L.linear_weight_grad(delta, cache.x_in)
        return grads

    def output_gradients(self, y_hat: np.ndarray, x_out: np.ndarray, y: np.ndarray,
                         trace: Trace | None = None) -> dict[str, np.ndarray]:
        """The output layer's exact weight gradient (summable over shards, as block_gradients)."""
        e = self._loss_grad(y_hat, y, "output", trace)
        if trace is not None:
            for key in (f"bwd_in/{self.spec.output_scaling.name}",
                        f"bwd_out/{self.spec.output_scaling.name}", f"bwd_in/{self.spec.output.name}"):
                trace.put(key, e)
        return {self.spec.output.name: L.linear_weight_grad(e, x_out)}

    def apply_gradients(self, grads: dict[str, np.ndarray], lr_inv: int, trace: Trace | None = None,
                        policy: WidthPolicy | None = None) -> None:
        """Narrow each whole-batch gradient to its declared width and apply IntegerSGD; wraps are
        counted in `policy` (default: the network's; a replica that repeats an update passes its own)."""
        for name, g in grads.items():
            self._update(self.layers[name], g, lr_inv, trace, policy or self.policy)

    def update_units(self) -> list[str | None]:
        """The updates of one step in order: None for the output layer, then a block name per
        local update (a block may appear twice: the reference's FC double update)."""
        return [None, *self.spec.backward_order]

    def train_step(self, x: np.ndarray, y: np.ndarray, lr_inv: int,
                   rng: np.random.RandomState | None = None, trace: Trace | None = None,
                   masks: dict | None = None) -> StepResult:
        """One mini-batch: forward, output-layer update, then every block's local update (spec 3.7)."""
        classes = self.spec.num_classes
        if y.shape != (x.shape[0], classes):
            raise NitroError(f"targets must have shape ({x.shape[0]}, {classes}), got {y.shape}")
        if trace is not None:
            trace.put("x", x)
            trace.put("y_onehot", y)
        y_hat, x_out, caches = self.forward(x, train=True, rng=rng, trace=trace, masks=masks)
        correct = int(np.count_nonzero(np.argmax(y_hat, axis=1) == np.argmax(y, axis=1)))
        for unit in self.update_units():
            grads = (self.output_gradients(y_hat, x_out, y, trace) if unit is None else
                     self.block_gradients(self.spec.blocks[unit], caches[unit], y, trace))
            self.apply_gradients(grads, lr_inv, trace)
        if trace is not None:
            trace.put("out", y_hat)
            for name, w in self.params.items():
                trace.put(f"after/{name}.weight", w)
        return StepResult(y_hat, correct)

    # ---- inference -------------------------------------------------------------------------

    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """Eval-mode network outputs (N, classes) int8; the predicted class is the first argmax."""
        outs = [self.forward(x[i:i + batch])[0] for i in range(0, len(x), batch)]
        return np.concatenate(outs) if outs else np.zeros((0, self.spec.num_classes), np.int8)

    def predict_local(self, x: np.ndarray, batch: int = 256) -> dict[str, np.ndarray]:
        """Each block's learning-layer output on eval-mode inputs: {block name: (N, classes) int8}."""
        res: dict[str, list] = {name: [] for name in self.spec.blocks}
        for i in range(0, len(x), batch):
            _, _, caches = self.forward(x[i:i + batch], keep=True)
            for name, c in caches.items():
                res[name].append(self._pred_forward(self.spec.blocks[name], c.a, None)[0])
        return {k: np.concatenate(v) for k, v in res.items()}

