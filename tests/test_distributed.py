"""Data-parallel meta-training on torchrun: two gloo processes over loopback reach the weights
of one process with the same total meta-batch and seed; the collectives it is made of."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from phys_l2o import load_checkpoint, parallel, spec_of
from phys_l2o.cli import main
from phys_l2o.experiments.training import build_seeded
from phys_l2o.meta import Schedule, meta_train
from phys_l2o.optimizers import HNN
from phys_l2o.parallel import Ranks
from phys_l2o.tasks import QuadraticTask

TRAIN = ["train", "--task", "quadratic", "--budget", "smoke", "--epochs", "3",
         "--trajectories", "2", "--meta-batch", "4", "--steps", "20", "--unroll", "5",
         "--validation-problems", "5", "--meta-lr", "0.01", "--no-compile", "--device", "cpu",
         "--no-progress", "--allow-untrained"]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "--no-python", "phys-l2o", *args],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("optimizer", ["hnn", "lstm"])
def test_two_gloo_ranks_train_the_weights_of_one_process(optimizer, tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    assert main([*TRAIN, "--optimizer", optimizer, "--out", str(one)]) == 0
    proc = torchrun(*TRAIN, "--optimizer", optimizer, "--out", str(two))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 processes" in proc.stdout and proc.stdout.count("wrote") == 1
    (a, rec_a), (b, rec_b) = load_checkpoint(one), load_checkpoint(two)
    assert rec_a["best_epoch"] == rec_b["best_epoch"]
    assert rec_b["best_validation"] == pytest.approx(rec_a["best_validation"], rel=1e-5)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6, msg=name)
    # the weights moved: the equality is not that of two untrained optimizers
    fresh = build_seeded(spec_of(a), 0, f"init-{optimizer}")
    assert any(not torch.equal(x, y) for x, y in zip(fresh.state_dict().values(),
                                                      a.state_dict().values()))


ES_CONFIG = """
[optimizer]
type = "hnn"
[task]
type = "quadratic"
dim = 4
[schedule]
epochs = 2
trajectories = 2
meta_batch = 4
steps = 10
validation_problems = 4
[estimator]
type = "es"
population = 6
"""


def test_evolution_strategies_on_two_ranks_give_the_weights_of_one_process(tmp_path):
    # each rank runs the whole population on its half of the problems, with the same noise
    config = tmp_path / "es.toml"
    config.write_text(ES_CONFIG)
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    args = ["train", "--config", str(config), "--budget", "smoke", "--no-progress",
            "--allow-untrained", "--device", "cpu"]
    assert main([*args, "--out", str(one)]) == 0
    proc = torchrun(*args, "--out", str(two))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (a, rec_a), (b, rec_b) = load_checkpoint(one), load_checkpoint(two)
    assert rec_a["estimator"]["type"] == rec_b["estimator"]["type"] == "es"
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-6, msg=name)
    fresh = build_seeded(spec_of(a), 0, "init-hnn")
    assert any(not torch.equal(x, y) for x, y in zip(fresh.state_dict().values(),
                                                      a.state_dict().values()))


def test_shares_and_an_uneven_meta_batch():
    assert [Ranks(r, 2).shard(5) for r in range(2)] == [slice(0, 2), slice(2, 5)]
    assert [Ranks(r, 3).shard(2) for r in range(3)] == [slice(0, 0), slice(0, 1), slice(1, 2)]
    schedule = Schedule(epochs=1, trajectories=1, meta_batch=3, steps=5, unroll=5,
                        validation_problems=2)
    with pytest.raises(ValueError, match="meta_batch 3 does not split evenly over 2 processes"):
        meta_train(HNN(), QuadraticTask(), schedule, ranks=Ranks(0, 2), progress=False)


def _collectives(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=2)
    ranks = Ranks(rank, 2)
    grads = [torch.full((2, 3), float(rank + 1)), torch.tensor([10.0 * rank])]
    ranks.average(grads)
    result = {"average": grads, "sum": ranks.sum(torch.tensor(rank + 1.0)),
              "all": [ranks.all(True), ranks.all(rank == 0)],
              "share": ranks.share({"epoch": 7} if rank == 0 else None)}
    torch.save(result, f"{out}-{rank}.pt")
    dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_collectives_average_sum_and_agree(tmp_path):
    torch.multiprocessing.spawn(_collectives, args=(free_port(), str(tmp_path / "r")), nprocs=2)
    for rank in range(2):
        result = torch.load(tmp_path / f"r-{rank}.pt")
        torch.testing.assert_close(result["average"][0], torch.full((2, 3), 1.5))
        torch.testing.assert_close(result["average"][1], torch.tensor([5.0]))
        assert float(result["sum"]) == 3.0
        assert result["all"] == [True, False]
        assert result["share"] == {"epoch": 7}


def _leave_together(rank: int, port: int, out: str) -> None:
    import time

    from phys_l2o import parallel

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with parallel.joined(torch.device("cpu")) as (ranks, _):
        assert ranks == Ranks(rank, 2, rank)
        if ranks.main:  # rank 0 still works (writes its reports) when rank 1 is done
            time.sleep(1.0)
        worked = time.time()
    torch.save({"worked": worked, "left": time.time()}, f"{out}-{rank}.pt")


def test_ranks_leave_the_process_group_together(tmp_path):
    # a rank that destroyed its side of the group while rank 0 still worked made gloo abort
    # the run at exit now and then; ``joined`` makes every rank wait for the others first
    torch.multiprocessing.spawn(_leave_together, args=(free_port(), str(tmp_path / "r")),
                                nprocs=2)
    zero, one = (torch.load(tmp_path / f"r-{rank}.pt") for rank in range(2))
    assert one["left"] >= zero["worked"]


def _one_rank_stops(rank: int, port: int, out: str) -> None:
    import signal

    from phys_l2o import parallel

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ranks, _ = parallel.distributed(torch.device("cpu"), parallel.collective_timeout(0.1))
    parallel.barrier(ranks)                   # both are in
    if rank == 1:                             # stopped, as by SIGSTOP or a hung machine
        os.kill(os.getpid(), signal.SIGSTOP)
    errors = {}
    try:
        ranks.sum(torch.ones(2))
    except parallel.RankTimeout as error:
        errors["sum"] = str(error)
    torch.save(errors, f"{out}-{rank}.pt")


def test_a_rank_that_stops_answering_is_named_after_the_timeout(tmp_path):
    """A stopped rank does not make the others wait for days: at a collective, rank 0 gives up
    after --timeout (here 6 s) and names the silent rank."""
    import multiprocessing
    import signal

    context = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [context.Process(target=_one_rank_stops, args=(rank, port, str(tmp_path / "r")))
             for rank in range(2)]
    for proc in procs:
        proc.start()
    try:
        procs[0].join(timeout=120)
        assert procs[0].exitcode == 0
    finally:
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].join(timeout=30)
    errors = torch.load(tmp_path / "r-0.pt")
    assert set(errors) == {"sum"}
    for error in errors.values():
        assert error.startswith("rank 1 gave no sign of life for 0.1 min") and "--timeout" in \
            error
    assert "a sum over the ranks" in errors["sum"]
    with pytest.raises(ValueError, match=r"--timeout \(minutes\) must be a positive finite number"):
        parallel.collective_timeout(0)
