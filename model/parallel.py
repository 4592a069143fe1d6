"""Data-parallel and pipelined training steps, bit-identical to one process.

Two properties of NITRO-D make this exact, not approximate:
- a batch's weight gradient is a sum of exact integers, narrowed once (wrapping at 32 bits as the
  reference does): the exact int64 partial gradients of any split of the batch, summed, give the
  bits one process gets;
- local-loss blocks send no gradient backward: a stage of consecutive blocks updates its layers
  from its own inputs alone, so stages run as a pipeline, one batch per stage in flight.

`plan_stages` groups the network into stages balanced by MACs per step. A `StageWorker` holds one
stage for one shard of every batch. `ParallelStepper` drives stages x shards workers through an
executor: `LocalExecutor` runs them in this process (tests, the reference for the arithmetic);
`scripts.scaleout.RayExecutor` runs them as Ray actors. Every dropout mask is drawn by the driver
from the one RandomState, in the order one process draws it.
"""
from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .network import Network
from .numerics import NitroError, WidthPolicy
from .spec import Block, Conv2d, Dropout, NetworkSpec


@dataclass(frozen=True)
class Stage:
    start: int  # spec.items[start:stop]
    stop: int
    output: bool  # holds the output layer (the last stage)
    units: tuple  # the step's updates this stage makes, in order (None: the output layer)
    macs: int  # per training sample


@dataclass(frozen=True)
class ParallelPlan:
    """How a training step is spread: `stages` pipeline stages (None: one per block, 1: no
    pipeline), `shards` data-parallel workers per stage."""
    stages: int | None = 1
    shards: int = 1

    def __post_init__(self) -> None:
        if self.stages is not None and (isinstance(self.stages, bool) or self.stages < 1):
            raise NitroError(f"--pipeline: the number of stages must be >= 1, got {self.stages}")
        if isinstance(self.shards, bool) or self.shards < 1:
            raise NitroError(f"--data-parallel: the number of workers must be >= 1, got {self.shards}")


def item_macs(net: Network) -> tuple[list[int], int]:
    """Multiply-accumulates per training sample of each item (a block: forward and weight-gradient
    GEMMs of its layer, forward, delta and weight-gradient GEMMs of its learning layer, once per
    local update) and of the output layer (forward and weight gradient)."""
    spec, h = net.spec, np.zeros((1, *net.spec.input_shape), np.int8)
    updates = Counter(spec.backward_order)
    costs = []
    for it in spec.items:
        cost = 0
        if isinstance(it, Block):
            out = net.forward_items(h, (it,))
            w = int(np.prod(it.layer.weight_shape))
            spatial = int(np.prod(out.shape[2:])) if isinstance(it.layer, Conv2d) else 1
            cost = 2 * w * spatial + 3 * int(np.prod(it.pred.weight_shape)) * updates[it.name]
            h = out
        elif not isinstance(it, Dropout):
            h = net.forward_items(h, (it,))
        costs.append(cost)
    return costs, 2 * int(np.prod(spec.output.weight_shape))


def balanced_cuts(weights: list, n: int) -> tuple[int, ...]:
    """Cut a sequence of chunk weights into n contiguous groups minimising the heaviest group
    (exhaustive dynamic programme: a network has a handful of blocks). Returns the group bounds
    (0, ..., len(weights))."""
    seg = lambda a, b: sum(weights[a:b])  # noqa: E731
    best = {(0, 0): (0, ())}
    for k in range(1, n + 1):
        for b in range(k, len(weights) + 1):
            options = [(max(best[(k - 1, a)][0], seg(a, b)), best[(k - 1, a)][1] + (b,))
                       for a in range(k - 1, b) if (k - 1, a) in best]
            if options:
                best[(k, b)] = min(options)
    return (0,) + best[(n, len(weights))][1]


def check_stages(spec, n_stages: int | None) -> None:
    """A network of `spec` can be cut into `n_stages` pipeline stages (one block at least each)."""
    blocks = sum(isinstance(it, Block) for it in spec.items)
    if n_stages is not None and n_stages > blocks:
        raise NitroError(f"--pipeline {n_stages}: the network has only {blocks} blocks to spread")


def check_shards(shards: int, batch: int) -> None:
    """Each of `shards` data-parallel replicas takes one image of a batch at least."""
    if batch < shards:
        raise NitroError(f"--data-parallel {shards} needs a batch of at least {shards} images, got {batch}")


def plan_stages(net: Network, n_stages: int | None) -> list[Stage]:
    """Cut spec.items before blocks into `n_stages` contiguous stages minimising the largest
    stage's MACs per step."""
    spec = net.spec
    blocks = [i for i, it in enumerate(spec.items) if isinstance(it, Block)]
    n = len(blocks) if n_stages is None else n_stages
    check_stages(spec, n)
    costs, out_cost = item_macs(net)
    costs[-1] += out_cost
    bounds = [0] + blocks[1:] + [len(spec.items)]  # candidate stage starts/ends
    seg = lambda a, b: sum(costs[bounds[a]:bounds[b]])  # noqa: E731
    cuts = balanced_cuts([seg(a, a + 1) for a in range(len(bounds) - 1)], n)
    stages = []
    for a, b in zip(cuts, cuts[1:]):
        start, stop = bounds[a], bounds[b]
        names = {it.name for it in spec.items[start:stop] if isinstance(it, Block)}
        last = stop == len(spec.items)
        units = ((None,) if last else ()) + tuple(u for u in spec.backward_order if u in names)
        stages.append(Stage(start, stop, last, units, seg(a, b)))
    return stages


class StageWorker:
    """One stage of the network for one shard of every batch: forward, exact partial gradients,
    and the update from the gradients summed over all shards (every replica applies the same sum,
    so replicas stay identical; only the first counts the update's wraps)."""

    def __init__(self, spec: NetworkSpec, params: dict, policy: WidthPolicy, stage: Stage,
                 counts_updates: bool) -> None:
        self.net = Network(spec, params, WidthPolicy(policy.widths, policy.mode))
        self.stage = stage
        self.items = spec.items[stage.start:stage.stop]
        self.update_policy = self.net.policy if counts_updates else WidthPolicy(policy.widths, policy.mode)

    def forward(self, h: np.ndarray, y: np.ndarray, masks: dict) -> np.ndarray | None:
        self.y, self.caches = y, {}
        h = self.net.forward_items(h, self.items, train=True, masks=masks, caches=self.caches)
        if not self.stage.output:
            return h
        self.x_out, self.y_hat = h, self.net.output_forward(h)
        return None

    def correct(self) -> int:
        return int(np.count_nonzero(np.argmax(self.y_hat, axis=1) == np.argmax(self.y, axis=1)))

    def gradients(self, unit: str | None) -> dict[str, np.ndarray]:
        if unit is None:
            return self.net.output_gradients(self.y_hat, self.x_out, self.y)
        return self.net.block_gradients(self.net.spec.blocks[unit], self.caches[unit], self.y)

    def apply(self, lr_inv: int, *partials: dict[str, np.ndarray]) -> None:
        total = {name: np.sum([np.asarray(p[name], np.int64) for p in partials], axis=0)
                 for name in partials[0]}
        self.net.apply_gradients(total, lr_inv, policy=self.update_policy)

    def collect(self) -> tuple[dict, str, Counter, dict]:
        """This stage's weights, their digest, and the width statistics since the last collect."""
        names = [n for n in self.net.params if self._holds(n)]
        weights = {n: self.net.params[n] for n in names}
        digest = hashlib.sha256(b"".join(weights[n].tobytes() for n in names)).hexdigest()
        policy = self.net.policy
        stats = (Counter(policy.wraps), dict(policy.observed))
        policy.wraps.clear()
        policy.observed.clear()
        return weights, digest, *stats

    def _holds(self, layer: str) -> bool:
        spec = self.net.spec
        if self.stage.output and layer == spec.output.name:
            return True
        return any(isinstance(it, Block) and layer in (it.layer.name, it.pred.name) for it in self.items)


class Executor(Protocol):
    def spawn(self, cls, *args): ...
    def submit(self, worker, method: str, *args): ...
    def get(self, ref): ...
    def kill(self, worker) -> None: ...


class LocalExecutor:
    """Workers as plain objects in this process: calls run at once, in submission order."""

    def spawn(self, cls, *args):
        return cls(*args)

    def submit(self, worker, method: str, *args):
        return getattr(worker, method)(*args)

    def get(self, ref):
        return ref

    def kill(self, worker) -> None:
        raise NitroError("an in-process worker cannot be killed")


class Stepper(Protocol):
    """How the training loop runs its steps (model.train)."""

    def step(self, x: np.ndarray, y: np.ndarray, lr_inv: int, rng: np.random.RandomState) -> int: ...
    def drain(self) -> int: ...
    def sync(self, net: Network) -> None: ...
    def close(self) -> None: ...


class LocalStepper:
    """One process: the network's own train_step."""

    def __init__(self, net: Network) -> None:
        self.net = net

    def step(self, x, y, lr_inv, rng) -> int:
        return self.net.train_step(x, y, lr_inv, rng=rng).correct

    def drain(self) -> int:
        return 0

    def sync(self, net: Network) -> None:
        pass

    def close(self) -> None:
        pass


class ParallelStepper:
    """Stages x shards workers behind an executor. `step` submits a batch and returns the correct
    predictions of the steps finished meanwhile (at most one step per stage stays in flight);
    `drain` waits for the rest; `sync` copies weights and width statistics into `net`.

    kill_at_step: a fault drill; the stepper kills its first worker after that many steps."""

    def __init__(self, net: Network, plan: ParallelPlan, executor: Executor,
                 kill_at_step: int | None = None) -> None:
        self.ex, self.plan, self.kill_at_step = executor, plan, kill_at_step
        self.stages = plan_stages(net, plan.stages)
        self.dropouts = [[it.name for it in net.spec.items[s.start:s.stop] if isinstance(it, Dropout)]
                         for s in self.stages]
        self.has_dropout = any(self.dropouts)
        self.workers = [[executor.spawn(StageWorker, net.spec, net.params, net.policy, s, k == 0)
                         for k in range(plan.shards)] for s in self.stages]
        self.pending: deque = deque()
        self.steps = 0
        self.draw_masks = net.draw_masks

    def step(self, x: np.ndarray, y: np.ndarray, lr_inv: int, rng: np.random.RandomState) -> int:
        masks = self.draw_masks(len(x), rng) if self.has_dropout else {}
        check_shards(self.plan.shards, len(x))
        rows = np.array_split(np.arange(len(x)), self.plan.shards)
        h = [x[r] for r in rows]
        for stage, workers, drop in zip(self.stages, self.workers, self.dropouts):
            h = [self.ex.submit(w, "forward", h[k], y[rows[k]], {n: masks[n][rows[k]] for n in drop})
                 for k, w in enumerate(workers)]
            for unit in stage.units:
                parts = [self.ex.submit(w, "gradients", unit) for w in workers]
                for w in workers:
                    self.ex.submit(w, "apply", lr_inv, *parts)
        self.pending.append([self.ex.submit(w, "correct") for w in self.workers[-1]])
        self.steps += 1
        if self.kill_at_step is not None and self.steps == self.kill_at_step:
            self.ex.kill(self.workers[0][0])
        done = 0
        while len(self.pending) > len(self.stages):
            done += self._wait_one()
        return done

    def _wait_one(self) -> int:
        return sum(self.ex.get(r) for r in self.pending.popleft())

    def drain(self) -> int:
        done = 0
        while self.pending:
            done += self._wait_one()
        return done

    def sync(self, net: Network) -> None:
        for s, workers in enumerate(self.workers):
            results = [self.ex.get(self.ex.submit(w, "collect")) for w in workers]
            if len({r[1] for r in results}) != 1:
                raise NitroError(f"stage {s}: the data-parallel replicas' weights differ (a bug)")
            net.params.update(results[0][0])
            for _, _, wraps, observed in results:
                net.policy.wraps.update(wraps)
                for key, (cls, mx) in observed.items():
                    net.policy.observed[key] = (cls, max(mx, net.policy.observed.get(key, (cls, 0))[1]))

    def close(self) -> None:
        self.workers = []
