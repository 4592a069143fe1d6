"""Issue 15: pipelined and data-parallel training, in-process and on a local Ray instance (2 CPUs),
bit-identical to one process: weights, accuracies, lr_inv schedule and wrap counts; a killed
worker; the sweep with a killed driver."""
import json
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.config import load_config, parse_config, with_seed
from model.numerics import NitroError
from model.parallel import LocalExecutor, ParallelPlan, ParallelStepper, plan_stages
from model.train import prepare, train
from scripts.cli import main

from conftest import REPO

# A short MLP: batch 256 (39 steps an epoch on the embedded subset), and a plateau rule that
# multiplies lr_inv after epoch 1, so two epochs cross an epoch boundary with an lr_inv change.
# Accumulators and weight gradients narrower than the reference's, so that forward outputs and
# updates wrap and the workers' wrap counts have something to add up.
NARROW = {"accumulator": 20, "gradient": 24}
MLP = """name = "{name}"
[data]
dataset = "embedded"
[network]
kind = "mlp"
hidden = [64, 32]
dropout = {dropout}
[train]
batch_size = 256
epochs = 2
[schedule]
start = 1
patience = 1
min_delta = 1.0
[numerics]
widths = {{ {narrow} }}
"""
PLANS = {"pipeline": ParallelPlan(None, 1), "data-parallel 2": ParallelPlan(1, 2),
         "both": ParallelPlan(None, 2)}
CLI_PLANS = {"pipeline": ["--pipeline"], "data-parallel 2": ["--data-parallel", "2"],
             "both": ["--pipeline", "--data-parallel", "2"]}


def mlp_config(tmp_path: Path, dropout: float) -> Path:
    f = tmp_path / f"mlp_{dropout}.toml"
    narrow = ", ".join(f"{k} = {v}" for k, v in NARROW.items())
    f.write_text(MLP.format(name=f"mlp_d{int(dropout * 10)}", dropout=dropout, narrow=narrow))
    return f


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def steps_in_process(cfg, plan: ParallelPlan | None, n: int):
    ds, net, rng = prepare(cfg, "embedded")
    stepper = ParallelStepper(net, plan, LocalExecutor()) if plan else None
    bs, correct = cfg.train.batch_size, 0
    for k in range(n):
        x, y = ds.train_x[k * bs:(k + 1) * bs], ds.train_y[k * bs:(k + 1) * bs]
        correct += stepper.step(x, y, 512, rng) if stepper else net.train_step(x, y, 512, rng=rng).correct
    if stepper:
        correct += stepper.drain()
        stepper.sync(net)
    return net, correct


@pytest.mark.parametrize("which", ["mlp", "mlp_dropout", "cnn_small_mnist"])
@pytest.mark.parametrize("plan", list(PLANS))
def test_in_process_workers_are_bit_identical(tmp_path, which, plan):
    if which == "cnn_small_mnist":
        cfg = load_config(REPO / "configs" / "cnn_small_mnist.toml")
        cfg = replace(cfg, train=replace(cfg.train, batch_size=32),
                      numerics=replace(cfg.numerics, widths=replace(cfg.numerics.widths, **NARROW)))
    else:
        cfg = load_config(mlp_config(tmp_path, 0.2 if which == "mlp_dropout" else 0.0))
    one, c1 = steps_in_process(cfg, None, 3)
    par, c2 = steps_in_process(cfg, PLANS[plan], 3)
    assert same_weights(one.params, par.params) and c1 == c2
    # forward outputs and an update wrapped (counted once, not once per replica)
    assert {t for _, t in one.policy.wraps} >= {"output", "weight gradient"}
    assert one.policy.wraps == par.policy.wraps and one.policy.observed == par.policy.observed


def test_stages_are_balanced_by_macs():
    cfg = load_config(REPO / "configs" / "vgg8b_mnist.toml")
    _, net, _ = prepare(replace(cfg, data=replace(cfg.data, dataset="embedded")), None)
    stages = plan_stages(net, 3)
    assert len(stages) == 3 and stages[-1].output and stages[-1].units[0] is None
    total = sum(s.macs for s in stages)
    assert max(s.macs for s in stages) < 0.6 * total  # a 3-way split of a VGG is far from 1 stage
    order = list(net.spec.backward_order)  # every local update once (FC blocks twice), each stage
    assert sorted(u for s in stages for u in s.units if u) == sorted(order)  # in that order
    for s in stages:
        assert [u for u in s.units if u] == [u for u in order if u in s.units]
    n = len(net.spec.blocks)
    assert len(plan_stages(net, None)) == n
    with pytest.raises(NitroError, match=f"only {n} blocks"):
        plan_stages(net, n + 1)


# ---- on Ray -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the module: the commands join it instead of starting
    their own."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def nitro(capsys, *argv):
    """(exit code, captured output) of the CLI run in-process."""
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr()


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory):
    """The one-process reference runs of both MLPs (2 epochs, lr_inv change after the first)."""
    runs = {}
    for dropout in (0.0, 0.2):
        tmp = tmp_path_factory.mktemp(f"single{dropout}")
        cfg = mlp_config(tmp, dropout)
        train(load_config(cfg), tmp / "run", progress=False)
        runs[dropout] = (cfg, load_checkpoint(tmp / "run" / "checkpoint.npz"))
    hist = runs[0.0][1].state["history"]
    assert [r["lr_inv"] for r in hist] == [512, 1536]  # the boundary changes lr_inv
    assert all({t for _, t, _ in ck.state["wraps"]} >= {"output", "weight gradient"} for _, ck in runs.values())
    return runs


def strip(history):
    return [{k: v for k, v in r.items() if k not in ("train_s", "train_img_s")} for r in history]


@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("plan", list(CLI_PLANS))
def test_ray_training_is_bit_identical(ray_local, single_runs, capsys, tmp_path, dropout, plan):
    cfg, ref = single_runs[dropout]
    out = tmp_path / "run"
    rc, captured = nitro(capsys, "train", "--config", cfg, "--out", out, "--no-progress", *CLI_PLANS[plan])
    assert rc == 0 and "trained on Ray with" in captured.out  # not the one-process path
    got = load_checkpoint(out / "checkpoint.npz")
    assert same_weights(got.params, ref.params)
    assert strip(got.state["history"]) == strip(ref.state["history"])
    assert got.state["wraps"] == ref.state["wraps"]


@pytest.mark.parametrize("plan", list(PLANS))
def test_cnn_steps_on_ray_are_bit_identical(ray_local, plan):
    """cnn_small_mnist on Ray actors: two steps (an epoch of it is minutes on 2 cores; the MLPs
    cover the epoch boundary, through the same training loop)."""
    from scripts.scaleout import RayExecutor

    cfg = load_config(REPO / "configs" / "cnn_small_mnist.toml")
    cfg = replace(cfg, train=replace(cfg.train, batch_size=16))
    one, c1 = steps_in_process(cfg, None, 2)
    ds, net, rng = prepare(cfg, "embedded")
    stepper = ParallelStepper(net, PLANS[plan], RayExecutor(0.3))
    c2 = sum(stepper.step(ds.train_x[k * 16:(k + 1) * 16], ds.train_y[k * 16:(k + 1) * 16], 512, rng)
             for k in range(2)) + stepper.drain()
    stepper.sync(net)
    assert same_weights(one.params, net.params) and c1 == c2


def test_killed_worker_run_ends_with_the_same_weights(ray_local, single_runs, capsys, tmp_path):
    cfg, ref = single_runs[0.2]
    out = tmp_path / "run"
    rc, cap = nitro(capsys, "train", "--config", cfg, "--out", out, "--no-progress", "--pipeline",
                    "--data-parallel", "2", "--kill-worker-at", "50")  # step 50: in epoch 2 of 39 steps
    assert rc == 0 and "workers restarted 1 time(s)" in cap.out
    got = load_checkpoint(out / "checkpoint.npz")
    assert same_weights(got.params, ref.params)
    assert strip(got.state["history"]) == strip(ref.state["history"])


def test_kill_drill_restarts_once(ray_local, capsys, tmp_path):
    from scripts.scaleout import train_distributed

    cfg = load_config(mlp_config(tmp_path, 0.0))
    _, restarts = train_distributed(cfg, tmp_path / "run", None, 1, False, False, False,
                                    ParallelPlan(1, 2), None, kill_at_step=10)
    assert restarts == 1  # the fault was injected, and survived
    with pytest.raises(NitroError, match="--kill-worker-at 40: the run has 39 steps left"):
        train_distributed(cfg, tmp_path / "run2", None, 1, False, False, False, ParallelPlan(1, 2), None,
                          kill_at_step=40)
    assert not (tmp_path / "run2" / "checkpoint.npz").exists()  # refused before the first step


def test_more_replicas_than_images_in_a_batch_is_refused_before_ray_starts(capsys, tmp_path, monkeypatch):
    import scripts.scaleout

    monkeypatch.setattr(scripts.scaleout, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    cfg = tmp_path / "b2.toml"
    cfg.write_text(mlp_config(tmp_path, 0.0).read_text().replace("batch_size = 256", "batch_size = 2"))
    rc, cap = nitro(capsys, "train", "--config", cfg, "--out", tmp_path / "r", "--data-parallel", "3",
                    "--no-progress")
    assert rc == 2 and cap.err.strip().splitlines() == [
        "nitro: error: --data-parallel 3 needs a batch of at least 3 images, got 2"]
    assert not (tmp_path / "r").exists()


def test_unreachable_address_is_one_error_line(capsys, tmp_path):
    rc, cap = nitro(capsys, "train", "--config", mlp_config(tmp_path, 0.0), "--out", tmp_path / "r",
                    "--address", "127.0.0.1:1", "--no-progress")
    assert rc == 2 and cap.err.strip().splitlines() == [
        "nitro: error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"]
    assert not (tmp_path / "r").exists()


def test_an_address_that_is_not_a_ray_cluster_is_one_error_line(capsys, tmp_path, ray_local):
    """A port that answers, but not as Ray's gRPC (here a web server), is refused at once: Ray
    itself would hang there for minutes. A Ray head's address passes the same check."""
    import http.server
    import threading

    from scripts.scaleout import reachable

    reachable(ray_local.get_runtime_context().gcs_address)

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # (the CLI's stderr is what the test reads)
            pass

    web = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{web.server_address[1]}"
        rc, cap = nitro(capsys, "train", "--config", mlp_config(tmp_path, 0.0), "--out", tmp_path / "r",
                        "--address", address, "--no-progress")
    finally:
        web.shutdown()
    assert rc == 2 and cap.err.strip().splitlines() == [
        f"nitro: error: {address} answers, but not as a Ray cluster (no gRPC server there)"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("address", ["localhost:\u00b2", "localhost:99999999999999999999", "localhost:65536",
                                     "localhost", ":80", ""])
def test_malformed_address_is_one_error_line(capsys, tmp_path, address):
    rc, cap = nitro(capsys, "train", "--config", mlp_config(tmp_path, 0.0), "--out", tmp_path / "r",
                    "--address", address, "--no-progress")
    assert rc == 2 and cap.err.startswith("nitro: error: --address must be HOST:PORT")
    assert cap.err.count("\n") == 1 and not (tmp_path / "r").exists()


# ---- sweep --------------------------------------------------------------------------------------

def sweep_configs(tmp_path: Path) -> list[Path]:
    files = []
    for name, hidden, epochs in (("sweep_a", 16, 1), ("sweep_b", 32, 6)):
        f = tmp_path / f"{name}.toml"
        f.write_text(f'name = "{name}"\n[data]\ndataset = "embedded"\n[network]\nkind = "mlp"\n'
                     f'hidden = [{hidden}]\n[train]\nbatch_size = 256\nepochs = {epochs}\n')
        files.append(f)
    return files


def test_sweep_summary_of_one_seed_claims_no_spread(tmp_path):
    """One seed has no standard deviation: the table says so instead of "+- 0.00"."""
    from scripts.sweep import Trial, write_summary

    trials = [Trial("", "one_cfg", 1, "d1", 1), Trial("", "two_cfg", 1, "d2", 1),
              Trial("", "two_cfg", 2, "d3", 1)]
    write_summary(tmp_path, trials, {t: {"best_test_acc": a} for t, a in zip(trials, (0.9, 0.8, 0.85))}, {})
    md = (tmp_path / "summary.md").read_text()
    assert "| one_cfg | 1 | 90.00 (one seed: no spread) |" in md and "| two_cfg | 2 | 82.50 +- 3.54 |" in md
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert [r["std"] for r in rows] == [None, pytest.approx(statistics.stdev([80.0, 85.0]))]


def test_sweep_table_plot_and_a_failing_trial(ray_local, capsys, tmp_path):
    cfgs = sweep_configs(tmp_path)
    bad = tmp_path / "sweep_bad.toml"
    bad.write_text(cfgs[0].read_text().replace("sweep_a", "sweep_bad")
                   + '[numerics]\nmode = "check"\nwidths = { activation = 4 }\n')
    out = tmp_path / "sweep"
    rc = main(["sweep", "--config", *map(str, cfgs), str(bad), "--seeds", "1", "2", "3",
               "--out", str(out), "--no-progress"])
    assert rc == 1  # the bad config's trials failed, the others finished
    doc = json.loads((out / "summary.json").read_text())
    rows = {r["config"]: r for r in doc["rows"]}
    for name in ("sweep_a", "sweep_b"):  # each row summarizes its own trials' results
        accs = [100 * json.loads((out / f"{name}_seed{s}" / "result.json").read_text())["best_test_acc"]
                for s in (1, 2, 3)]
        assert rows[name]["seeds"] == 3 and sorted(rows[name]["best_test_acc"]) == sorted(accs)
        assert rows[name]["mean"] == pytest.approx(statistics.fmean(accs))
        assert rows[name]["std"] == pytest.approx(statistics.stdev(accs)) and rows[name]["std"] > 0
    assert sorted(doc["failed"]) == ["sweep_bad_seed1", "sweep_bad_seed2", "sweep_bad_seed3"]
    assert all("does not fit the declared 4-bit activation width" in why for why in doc["failed"].values())
    assert (out / "summary.png").stat().st_size > 0
    assert "| sweep_a | 3 |" in (out / "summary.md").read_text()


def test_sweep_resumes_after_the_driver_is_killed(tmp_path):
    cfgs = sweep_configs(tmp_path)
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "scripts.cli", "sweep", "--config", *map(str, cfgs), "--seeds", "1", "2",
            "--out", str(out), "--no-progress"]
    driver = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # generous: on a loaded machine (nextpnr beside the suite) Ray's start and the first trial
    # took more than 120 s; on an idle one the loop ends within seconds
    deadline = time.time() + 600
    b2 = out / "sweep_b_seed2"
    while not ((b2 / "checkpoint.npz").exists() and not (b2 / "result.json").exists()) \
            and time.time() < deadline:  # kill while sweep_b_seed2 is between epochs
        time.sleep(0.02)
    assert (b2 / "checkpoint.npz").exists(), "sweep_b_seed2 wrote no checkpoint in 600 s"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/result.json")}
    epochs_before = load_checkpoint(b2 / "checkpoint.npz").epoch
    assert "sweep_a_seed1" in done and "sweep_b_seed2" not in done and 1 <= epochs_before < 6
    rerun = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(done)} finished earlier (skipped), {4 - len(done)} to run" in rerun.stdout
    for name, mtime in done.items():  # finished trials were not run again
        assert (out / name / "result.json").stat().st_mtime_ns == mtime
    # an interrupted trial resumed from its checkpoint to the same result as an uninterrupted run
    cfg = parse_config(cfgs[1].read_text(), "sweep_b")
    ref = train(with_seed(cfg, 2), tmp_path / "ref", progress=False)
    got = json.loads((out / "sweep_b_seed2" / "result.json").read_text())
    assert got["best_test_acc"] == ref.best_test_acc and got["epochs_run"] == 6


def test_sweep_refuses_repeats_and_results_not_its_own(tmp_path):
    """A seed or config given twice would train two tasks into one folder and count one result
    twice; a result.json that is not this trial's (another config, more epochs) is the user's and
    is refused before any work; an unreadable one, or one of fewer epochs, runs (resumes) the trial."""
    from scripts.sweep import RESULT, finished, plan_trials

    cfgs = sweep_configs(tmp_path)
    with pytest.raises(NitroError, match="--seeds names a seed twice"):
        plan_trials(cfgs, [1, 1], None)
    with pytest.raises(NitroError, match="have the same name 'sweep_a'"):
        plan_trials([cfgs[0], cfgs[0]], [1], None)
    a1 = plan_trials(cfgs[:1], [1], None)[0]
    f = tmp_path / "out" / a1.folder / RESULT
    f.parent.mkdir(parents=True)
    ok = {"best_test_acc": 0.5, "epochs": a1.epochs, "config_digest": a1.digest}
    for text in ("{}", "[1]", '{"best_test_acc": "x"}', b"\xff\xfe"):
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        assert finished(tmp_path / "out", a1) is None
    f.write_text(json.dumps(ok))
    assert finished(tmp_path / "out", a1) == ok
    assert finished(tmp_path / "out", plan_trials(cfgs[:1], [1], None, epochs=3)[0]) is None
    with pytest.raises(NitroError, match="is the result of another config"):
        finished(tmp_path / "out", replace(a1, digest="0" * 16))
    f.write_text(json.dumps({**ok, "epochs": a1.epochs + 1}))
    with pytest.raises(NitroError, match=f"is the result of {a1.epochs + 1} epochs"):
        finished(tmp_path / "out", a1)


def test_sweep_checks_the_data_and_keeps_summaries_not_its_own(capsys, tmp_path, monkeypatch):
    """Before Ray starts: a batch larger than the data, or summary files of the user's in --out
    (a sweep rerun rewrites only its own summary), are one error line; nothing is written."""
    import scripts.scaleout

    monkeypatch.setattr(scripts.scaleout, "ray_session", lambda *a, **k: pytest.fail("Ray started"))
    cfgs = sweep_configs(tmp_path)
    big = tmp_path / "big.toml"
    big.write_text(cfgs[0].read_text().replace("batch_size = 256", "batch_size = 100000"))
    rc, cap = nitro(capsys, "sweep", "--config", str(big), "--seeds", "1", "--out", str(tmp_path / "s1"))
    assert rc == 2 and "smaller than one batch" in cap.err and not (tmp_path / "s1").exists()
    out = tmp_path / "s2"
    out.mkdir()
    (out / "summary.md").write_text("my notes")
    rc, cap = nitro(capsys, "sweep", "--config", str(cfgs[0]), "--seeds", "1", "--out", str(out))
    assert rc == 2 and "summary.md that nitro sweep did not write" in cap.err
    assert (out / "summary.md").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == ["summary.md"]


def test_sweep_refuses_more_cpus_per_trial_than_a_node_has(ray_local, capsys, tmp_path):
    """Ray would keep such a trial waiting for ever: one error line instead, no trial run."""
    out = tmp_path / "sweep"
    rc, cap = nitro(capsys, "sweep", "--config", sweep_configs(tmp_path)[0], "--seeds", "1",
                    "--out", out, "--cpus-per-trial", "3", "--no-progress")
    assert rc == 2 and cap.err.strip().splitlines() == [
        "nitro: error: --cpus-per-trial 3: the largest node of the Ray instance has 2 CPUs"]
    assert cap.out == "" and not list(out.glob("*/result.json"))  # nothing said of a plan


def test_a_cluster_may_grow_a_node_large_enough(capsys):
    """A cluster joined at --address may autoscale: a task larger than its nodes is a note, not
    an error, there; on a local instance it is refused."""
    from scripts.scaleout import check_task_cpus

    class Ray:
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"CPU": 4.0}}, {"Alive": False, "Resources": {"CPU": 64.0}}]

    check_task_cpus(Ray, 4, "--cpus-per-trial", cluster=False)
    check_task_cpus(Ray, 8, "--cpus-per-trial", cluster=True)
    assert capsys.readouterr().err == ("nitro: note: --cpus-per-trial 8: the largest node of the Ray "
                                       "cluster has 4 CPUs now; the tasks wait until the cluster "
                                       "adds a larger one\n")
    with pytest.raises(NitroError, match="the largest node of the Ray instance has 4 CPUs"):
        check_task_cpus(Ray, 8, "--cpus-per-trial", cluster=False)
