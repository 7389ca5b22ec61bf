"""Processes and threads: the thread policy, and the ranks of a run started by ``torchrun``.

**Threads.** A learned optimizer's step is many small per-coordinate operations. With torch's
default of one intra-op thread per core, such steps wait on each other as soon as another
process uses a core: one MNIST meta-training trajectory takes about 0.4 s on an idle 2-core
machine and about 20 s while another process keeps one core busy. So every phys-l2o process
sets its threads itself: ``DEFAULT_THREADS`` (one) per process, never more than the cores it
may use divided by the processes of its machine (``LOCAL_WORLD_SIZE`` under ``torchrun``).
``benchmarks/bench_threads.py`` measures the trade: the MNIST smoke reproduction on 2 cores
takes 74 s with one thread and 46 s with two on an idle machine, but 77 s and 127 s while
another process keeps a core busy. ``--threads N`` overrides the default where the machine is
known to be idle.

**Memory.** A learned optimizer's step allocates and frees tensors of megabytes (an MNIST
LSTM's gates are 5 MB per layer and problem) thousands of times a second. With glibc's
defaults such blocks are mapped from the kernel and given back at every free, so each step
faults its memory in again: an MNIST LSTM meta-training process spent about a sixth of its CPU
time in the kernel (10 million page faults in two epochs). The ``phys-l2o`` command therefore
keeps freed memory in the process for reuse (``keep_freed_memory``): page faults fall ~20x
and the kernel's share to about 2%, at the price of a larger resident size (2.2-2.7 GB instead
of 1.9 GB for that run).

**Workers.** The sweep runner runs the jobs of a run side by side in worker processes of one
thread each (``experiments.engines.run_local``), as many as the cores allow, so that a run
leaves no core idle; each worker dies with the process that started it (``die_with_parent``).
Sweeps over several machines are Ray's (``experiments.engines.run_ray``).

**Ranks.** ``torchrun --nproc-per-node N --no-python phys-l2o train ...`` starts N processes
(and more machines join through torchrun's rendezvous); ``distributed()`` joins them into one
process group: gloo on CPU, NCCL (plus gloo for Python objects) on GPUs, each rank on the GPU of
its local rank.

**Data-parallel meta-training.** ``torchrun --nproc-per-node N --no-python phys-l2o train ...
--meta-batch B`` meta-trains one optimizer on N processes: every rank draws the same meta-batch
of B problems and optimizes its own B/N of them (``Ranks.shard``); each truncation's
meta-gradients are averaged across the ranks (``Ranks.average``, one all-reduce) before the
same Adam step on every rank, so the weights stay identical, and equal those of one process
with the whole meta-batch up to float rounding. Validation is sharded the same way
(``Ranks.sum``); rank 0 alone writes.

**A rank that does not answer.** Every rank of a launch gives a sign of life every
``HEARTBEAT`` seconds (``Heartbeat``: a counter in the launch's own store, moved by a thread of
the rank). A rank that waits for the others at a collective of meta-training gives up when
one of them has shown no sign of life for the timeout (``--timeout`` minutes,
``DEFAULT_TIMEOUT``), and says which (``RankTimeout``): a rank that is stopped, hung or cut off
from the others. A rank that dies outright ends the launch at once (torchrun stops the
others).
"""

from __future__ import annotations

import ctypes
import datetime
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .checks import positive_number

#: intra-op threads per process unless ``--threads`` says otherwise.
DEFAULT_THREADS = 1
#: how long a rank waits for another that shows no sign of life (``--timeout`` minutes).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
#: seconds between a rank's signs of life (``Heartbeat``).
HEARTBEAT = 2.0


class RankTimeout(RuntimeError):
    """Other ranks of the launch did not answer within the timeout: stopped, hung or cut off.
    The message names them and says what to do."""


def collective_timeout(minutes: float | None) -> datetime.timedelta:
    """``--timeout``: minutes, positive; ``None`` is ``DEFAULT_TIMEOUT``.

    Raises:
        ValueError: not a positive finite number.
    """
    if minutes is None:
        return DEFAULT_TIMEOUT
    return datetime.timedelta(minutes=positive_number("--timeout (minutes)", minutes))


def silent_message(silent: list[int], timeout: datetime.timedelta, what: str) -> str:
    ranks = ", ".join(map(str, silent))
    minutes = timeout.total_seconds() / 60
    return (f"rank{'s' if len(silent) > 1 else ''} {ranks} gave no sign of life for "
            f"{minutes:g} min while this rank waited at {what}: stopped, hung or cut off from "
            "the others. Stop the launch and run the same command again: finished cells and "
            "the training state of the last finished epoch are kept. --timeout MINUTES sets "
            "the wait")


class Heartbeat:
    """This rank's sign of life, and the watch on the others': a counter per rank in the
    launch's own store (``torchrun``'s, at ``MASTER_ADDR:MASTER_PORT``) that a thread of the
    rank moves every ``HEARTBEAT`` seconds. A stopped process moves it no more; so does a
    process cut off from the store."""

    def __init__(self, ranks: Ranks, timeout: datetime.timedelta) -> None:
        import torch.distributed as dist

        def client():  # one per thread: the beating thread's and the watching one's
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                  is_master=False, timeout=timeout)
            return dist.PrefixStore("phys-l2o/", store)

        self.store, self._beats = client(), client()
        self.ranks, self.timeout = ranks, timeout
        self._beats.add(f"beat/{ranks.rank}", 1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="phys-l2o heartbeat")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self._beats.add(f"beat/{self.ranks.rank}", 1)
            except Exception:  # the store is gone: the launch is ending
                return

    def stop(self) -> None:
        self._stop.set()

    def count(self, rank: int) -> int:
        return int(self.store.add(f"beat/{rank}", 0))

    def others(self) -> list[int]:
        return [r for r in range(self.ranks.world) if r != self.ranks.rank]

    def silent(self, among: list[int], seconds: float) -> list[int]:
        """Those of ``among`` that gave no sign of life during ``seconds`` (this call waits)."""
        before = {r: self.count(r) for r in among}
        time.sleep(seconds)
        return [r for r in among if self.count(r) == before[r]]


#: this process's heartbeat while it is a rank of a launch (``distributed``).
_LIFE: Heartbeat | None = None


@contextmanager
def answered(what: str) -> Iterator[None]:
    """A collective: where it fails (its timeout, or a peer gone), name the ranks that gave no
    sign of life, when there are such."""
    try:
        yield
    except RankTimeout:
        raise
    except RuntimeError as error:
        life = _LIFE
        silent = life.silent(life.others(), 2.5 * HEARTBEAT) if life is not None else []
        if not silent:
            raise
        raise RankTimeout(silent_message(silent, life.timeout, what)) from error


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this run on this machine (``LOCAL_WORLD_SIZE`` under torchrun, else 1)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def policy_threads(requested: int | None = None) -> int:
    """The intra-op threads of this process: ``requested``, else ``DEFAULT_THREADS`` capped at
    this process's share of the cores."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be a positive integer, got {requested!r}")
        return requested
    return max(1, min(DEFAULT_THREADS, available_cores() // local_processes()))


@contextmanager
def thread_policy(requested: int | None = None) -> Iterator[int]:
    """Apply the thread policy (``configure_threads``) for the duration of a block, then give
    the caller's intra-op thread count back; yields the count."""
    before = torch.get_num_threads()
    try:
        yield configure_threads(requested)
    finally:
        torch.set_num_threads(before)


def configure_threads(requested: int | None = None) -> int:
    """Apply the thread policy to this process (``torch.set_num_threads``); returns the count.

    Inter-op threads are set to the same count when torch still allows it (before its first
    parallel work)."""
    threads = policy_threads(requested)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work has started: leave it
        pass
    return threads


#: Linux's ``prctl`` option that signals a process when its parent dies
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Make this process (a worker) be killed when its parent process ``parent`` dies, so a
    worker never goes on writing a run's files after the run was killed (Linux's
    ``PR_SET_PDEATHSIG``); exits at once if the parent is already gone. Returns whether it
    applied (False off Linux)."""
    import signal

    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)
    return True


#: glibc's ``mallopt`` parameters
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make the C allocator keep freed memory for reuse instead of returning it to the kernel
    (glibc's ``mallopt``: no blocks mapped apart, no trimming of the heap below 2 GiB free).
    A process-wide setting for the rest of the process; returns whether it applied (False
    where the C library is not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the reports."""
        return self.rank == 0

    def shard(self, total: int) -> slice:
        """This rank's contiguous share of ``total`` items (shares differ by at most one; a
        rank may get none when ``total < world``)."""
        return slice(self.rank * total // self.world, (self.rank + 1) * total // self.world)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over the ranks (a new tensor; ``value`` itself for one)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        total = value.detach().clone()
        with answered("a sum over the ranks"):
            dist.all_reduce(total)
        return total

    def all(self, flag: bool | torch.Tensor) -> bool:
        """Whether ``flag`` holds on every rank (every rank gets the same answer)."""
        if self.world == 1:
            return bool(flag)
        return bool(self.sum(torch.tensor(0.0 if bool(flag) else 1.0)) == 0)

    def share(self, value: object) -> object:
        """Rank 0's ``value`` on every rank (what the others pass is ignored)."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        with answered("a broadcast from rank 0"):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor (gradients) by its mean over the ranks, in one all-reduce."""
        if self.world == 1 or not tensors:
            return
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1) for t in tensors])
        with answered("the average of a meta-gradient"):
            dist.all_reduce(flat)
        flat /= self.world
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def distributed(device: torch.device, timeout: datetime.timedelta = DEFAULT_TIMEOUT
                ) -> tuple[Ranks, torch.device]:
    """Join the process group of a ``torchrun`` launch (a no-op for one process), with
    ``timeout`` on its collectives, and start this rank's ``Heartbeat``.

    Returns this process's ranks and its device: under torchrun on CUDA, the GPU of its local
    rank. ``joined`` wraps it and leaves the group at the end."""
    global _LIFE
    if not launched_by_torchrun():
        return Ranks(), device
    import torch.distributed as dist

    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                  int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        if torch.cuda.device_count() <= ranks.local_rank:
            raise ValueError(f"local rank {ranks.local_rank} has no GPU of its own "
                             f"({torch.cuda.device_count()} visible); start at most that many "
                             "processes per machine (--nproc-per-node)")
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)
    if _LIFE is None:
        _LIFE = Heartbeat(ranks, timeout)
    return ranks, device


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        import torch.distributed as dist

        with answered("a barrier"):
            dist.barrier()


@contextmanager
def joined(device: torch.device, timeout: datetime.timedelta = DEFAULT_TIMEOUT
           ) -> Iterator[tuple[Ranks, torch.device]]:
    """``distributed(device, timeout)`` for the duration of a block; yields its ranks and
    device.

    On leaving the block normally every rank waits for the others (a barrier) before the
    process group is destroyed: a rank that destroyed its side while another still worked
    (rank 0 writing its reports) made gloo abort the run at exit ("terminate called without
    an active exception"). Leaving by an exception skips the wait: the others may never come."""
    ranks, device = distributed(device, timeout)
    try:
        yield ranks, device
    except BaseException:
        _leave(wait=False)
        raise
    _leave(wait=True)


def _leave(wait: bool) -> None:
    global _LIFE
    if launched_by_torchrun():
        import torch.distributed as dist

        if dist.is_initialized():
            if wait:
                with answered("the end of the run"):
                    dist.barrier()
            dist.destroy_process_group()
        if _LIFE is not None:
            _LIFE.stop()
            _LIFE = None
