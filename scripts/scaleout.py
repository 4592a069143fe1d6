"""Ray backend of `nitro train --pipeline / --data-parallel` (model.parallel's workers as Ray actors)
and the Ray session both it and `nitro sweep` run in.

Without `--address` a local Ray instance is started for the command and stopped after it; with one,
the command joins that cluster. A worker that dies (its process killed, its node lost) does not
lose the run: training restarts from the last checkpoint, whose RNG state and weights make the
rest of the run identical to an uninterrupted one.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from model.numerics import NitroError
from model.parallel import ParallelPlan, ParallelStepper

MAX_RESTARTS = 3
ONE_BLAS_THREAD = {"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None):
    """A Ray instance for the duration of a command: joined at `address` (which the command checked
    with `reachable` before its first output), or started locally."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    logging.getLogger("ray").setLevel(logging.ERROR)  # its banners would follow our one error line
    try:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise NitroError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_task_cpus(ray, cpus: float, option: str, cluster: bool) -> None:
    """A task that asks for more CPUs than any node has waits, without an error, until such a node
    joins: never on a local instance (NitroError); on a cluster joined at --address only if it
    autoscales, which Ray does not tell its clients (a note on stderr, then the wait)."""
    most = max((n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n["Alive"]), default=0.0)
    if cpus <= most:
        return
    if not cluster:
        raise NitroError(f"{option} {cpus:g}: the largest node of the Ray instance has {most:g} CPUs")
    print(f"nitro: note: {option} {cpus:g}: the largest node of the Ray cluster has {most:g} CPUs "
          f"now; the tasks wait until the cluster adds a larger one", file=sys.stderr)


# an HTTP/2 client's connection preface and an empty SETTINGS frame: a Ray head's GCS and Ray
# Client ports are gRPC servers, which answer with a SETTINGS frame (type 4) of their own
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def reachable(address: str, timeout_s: float = 5.0) -> None:
    """A cluster address answers on its port, as a gRPC server (Ray itself retries for minutes
    before giving up, and hangs on a port that answers otherwise)."""
    import socket

    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise NitroError(f"--address must be HOST:PORT (or ray://HOST:PORT, or auto), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as conn:
            conn.sendall(H2_PREFACE)
            head = b""
            while len(head) < 9 and (part := conn.recv(9 - len(head))):
                head += part
    except OSError as exc:
        raise NitroError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None
    if len(head) < 9 or head[3] != 4:
        raise NitroError(f"{address} answers, but not as a Ray cluster (no gRPC server there)")


class RayExecutor:
    """model.parallel's executor on Ray actors, each pinned to one BLAS thread."""

    def __init__(self, cpus_per_worker: float) -> None:
        self.cpus = cpus_per_worker

    def spawn(self, cls, *args):
        import ray

        return ray.remote(cls).options(num_cpus=self.cpus, runtime_env=ONE_BLAS_THREAD,
                                       max_restarts=0).remote(*args)

    def submit(self, worker, method: str, *args):
        return getattr(worker, method).remote(*args)

    def get(self, ref):
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, NitroError):  # bad input found by a worker (e.g. check mode)
                raise exc.cause from None
            raise

    def kill(self, worker) -> None:
        import ray

        ray.kill(worker)


def cpus_per_worker(ray, plan: ParallelPlan, n_stages: int) -> float:
    """Workers share the cluster's CPUs evenly (at most one each)."""
    return min(1.0, ray.cluster_resources().get("CPU", 1.0) / (n_stages * plan.shards))


def train_distributed(cfg, out: Path, data_dir, epochs, resume: bool, progress: bool, force: bool,
                      plan: ParallelPlan, address: str | None, kill_at_step: int | None = None):
    """model.train.train with its steps on Ray workers; restarts from the last checkpoint when a
    worker dies. Returns (TrainResult, restarts)."""
    import ray.exceptions
    from tqdm import tqdm

    from model.datasets import image_shape
    from model.parallel import check_shards, check_stages, plan_stages
    from model.train import CHECKPOINT, prepare_output, train

    if address is not None:  # ("" too: refused by its format)
        reachable(address)  # bad input before the run folder is made and Ray starts
    prepare_output(Path(out), resume, force)  # (train checks it again, as for a run without Ray)
    check_stages(cfg.build_spec(image_shape(cfg.data.dataset)), plan.stages)
    check_shards(plan.shards, cfg.train.batch_size)
    ck = Path(out) / CHECKPOINT
    mark = ck.stat().st_mtime_ns if ck.exists() else None  # a checkpoint this run did not write
    restarts = 0
    with ray_session(address):
        def stepper(net, steps_left):
            if kill_at_step is not None and restarts == 0 and kill_at_step > steps_left:
                raise NitroError(f"--kill-worker-at {kill_at_step}: the run has {steps_left} steps "
                                 f"left, so no worker would be killed")
            cpus = cpus_per_worker(ray, plan, len(plan_stages(net, plan.stages)))
            return ParallelStepper(net, plan, RayExecutor(cpus), kill_at_step if restarts == 0 else None)

        while True:
            try:
                res = train(cfg, out, data_dir, epochs, resume=resume, progress=progress, force=force,
                            make_stepper=stepper)
                if kill_at_step is not None and restarts == 0:  # stopped early: the drill never ran
                    raise NitroError(f"--kill-worker-at {kill_at_step}: the run stopped early, before "
                                     f"that step, so no worker was killed")
                return res, restarts
            except ray.exceptions.RayActorError as exc:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise NitroError(f"workers died {restarts} times; last: {exc}") from None
                resume = resume or (ck.exists() and ck.stat().st_mtime_ns != mark)
                tqdm.write(f"a worker died ({type(exc).__name__}); restarting from "
                           f"{'the last checkpoint' if resume else 'the start'} ({restarts}/{MAX_RESTARTS})")
