"""Data-parallel training: the process world torchrun (or ``accelerate launch``) starts, and DDP.

Without a launcher a run is a world of one process with no process group, and training
takes exactly the path it always took. Under torchrun each process joins the group
(NCCL on CUDA, each process on ``cuda:LOCAL_RANK``; gloo on the CPU), takes its share of
each step's examples, and torch's DistributedDataParallel averages the gradients once per
step, on the last micro-step of the accumulation. Rank 0 alone writes checkpoints and
reports progress; every rank reads the newest checkpoint at start, so the process count
may change between a run and its resumption.

torch is imported inside the functions: the serving path never imports this module's
dependencies (tests/test_layers.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from model.training.train.base import TrainingError
from model.training.train.fimformat import Encoded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes.

    ``distributed`` says whether a process group is up; without one, the collectives
    below return their input unchanged (a world of one, or a test's stand-in rank).
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and the run's outputs (rank 0)."""
        return self.rank == 0

    def share(self, batch_size: int) -> range:
        """The positions, within a step's ``batch_size`` examples, that this process trains.

        A batch that does not split evenly is refused: every process must run the same
        number of micro-steps, or the gradient averaging would wait forever.
        """
        if batch_size < 1 or batch_size % self.size:
            raise TrainingError(
                f"--batch-size {batch_size} does not split evenly over {self.size} "
                f"processes: choose a multiple of {self.size}"
            )
        each = batch_size // self.size
        return range(self.rank * each, (self.rank + 1) * each)

    def total(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over every process (float64), the same on each."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]

    def barrier(self) -> None:
        """Wait until every process reaches this point."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if self.device.startswith("cuda"):
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (nothing to do in a world of one)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def launched_size() -> int:
    """The number of processes the launcher started (1 without torchrun or accelerate)."""
    return _env_int("WORLD_SIZE", 1)


def start_world(device: str = "cpu") -> World:
    """Join the launcher's process group, or make a world of one without a launcher.

    ``device`` is ``cpu``, ``cuda`` or ``auto``; under a launcher, CUDA means this
    process's own GPU, ``cuda:LOCAL_RANK``. A world of one (no launcher, or one process)
    starts no process group, so a plain run is unchanged.
    """
    size = launched_size()
    if size <= 1:
        return World(device=device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    import torch
    import torch.distributed as dist

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        raise TrainingError(
            f"--device {device} names one GPU, but each of the {size} processes takes its own "
            "(cuda:LOCAL_RANK): use --device cuda"
        )
    backend, device_id = "gloo", None
    if device == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise TrainingError(
                f"process {rank} wants GPU {local_rank}, but torch sees "
                f"{torch.cuda.device_count()}: start at most that many processes per machine"
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
        backend, device_id = "nccl", torch.device(device)
    try:
        dist.init_process_group(backend, rank=rank, world_size=size, device_id=device_id)
    except (ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(f"cannot join the {size}-process group ({backend}): {first}") from None
    logger.info("process %d of %d on %s (%s)", rank, size, device, backend)
    return World(rank=rank, size=size, local_rank=local_rank, device=device, distributed=True)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise TrainingError(f"{name}={text!r} is not a number (set by torchrun)") from None


def loss_engine(peft_model: Any, world: World, loss: Callable[[Any, Encoded], Any]) -> Any:
    """``loss(peft_model, encoded)`` as a module: ``engine(encoded)`` is the loss.

    In a distributed world it is wrapped in DistributedDataParallel, whose hooks average
    the LoRA gradients over the processes during the backward pass. DDP is told to leave
    the frozen base and the buffers alone: every process loaded the same base, and
    broadcasting a whole model at start would cost as much as a checkpoint. It still
    broadcasts rank 0's LoRA weights, so every process starts the same.
    """
    import torch

    class Loss(torch.nn.Module):
        """The wrapped model's loss (DDP wraps modules, not functions)."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, encoded: Encoded) -> Any:
            return loss(self.model, encoded)

    engine = Loss(peft_model)
    if not world.distributed:
        return engine
    from torch.nn.parallel import DistributedDataParallel

    frozen = [name for name, p in engine.named_parameters() if not p.requires_grad]
    buffers = [name for name, _ in engine.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(engine, frozen + buffers)
    device_ids = [world.local_rank] if world.device.startswith("cuda") else None
    return DistributedDataParallel(engine, device_ids=device_ids)


@contextlib.contextmanager
def accumulating(engine: Any, last: bool) -> Iterator[None]:
    """One micro-step: gradients stay local until the ``last`` one, which averages them."""
    if last or not hasattr(engine, "no_sync"):
        yield
        return
    with engine.no_sync():
        yield


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on a CUDA GPU that computes in bf16, under ``auto``; float32 elsewhere.

    The LoRA weights, gradients and AdamW's moments stay float32 either way; bf16 needs
    no loss scaling.
    """
    if precision == "auto" and device.startswith("cuda"):
        import torch

        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
