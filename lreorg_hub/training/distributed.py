"""Data-parallel training through Hugging Face ``accelerate``.

A run is data-parallel when it is started by a launcher that sets ``WORLD_SIZE`` > 1:
``accelerate launch --multi_gpu --num_processes 8 -m lreorg_hub.cli train …`` on GPUs, or
``lreorg train --num-processes N …``, which starts the same command under
``torch.distributed.run`` (the launcher ``accelerate launch --multi_gpu`` itself calls; it
also works on CPUs, where accelerate picks gloo).

How the work is split, so that the process count changes nothing but speed: every process
draws the *same* global batch of ``batch_size`` pairs and the same keyword from the same
random generators, and computes the objective on its own slice of the pairs; ``accelerate``'s
DDP wrapper averages the gradients, which is the gradient of the global batch mean (slices
are equal). The random generators, weights and Adam state are therefore the same in every
process, a checkpoint holds one copy of each, and it resumes on any process count. One
process is exactly the single-process code path (no wrapper, no collective), which keeps
bit-for-bit resumption.
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["is_distributed_launch", "make_accelerator", "launch_command", "shard_pairs",
           "Parallel"]


def shard_pairs(s1: torch.Tensor, s2: torch.Tensor, index: int, count: int):
    """Process ``index`` of ``count``'s equal slice of the global pairs (s₁, s₂)."""
    if s1.shape[0] % count:
        raise ValueError(f"{s1.shape[0]} pairs do not split into {count} equal slices")
    part = s1.shape[0] // count
    return s1[index * part:(index + 1) * part], s2[index * part:(index + 1) * part]


def is_distributed_launch() -> bool:
    """Whether this process was started by a multi-process launcher."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def make_accelerator(device: str):
    """An ``accelerate.Accelerator`` for this process (its device: the local GPU, or the CPU
    when ``device`` says cpu or no GPU exists). Mixed precision stays "no" here: the trainer
    autocasts only the frozen networks, never CDFNet (accelerate's would wrap CDFNet too)."""
    try:
        from accelerate import Accelerator
    except ImportError as e:  # a declared dependency, but say what to do
        raise RuntimeError("multi-process training needs Hugging Face accelerate "
                           "(pip install accelerate)") from e
    cpu = str(device).startswith("cpu") or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="no")


def launch_command(num_processes: int, argv: list[str]) -> list[str]:
    """The command that runs ``lreorg <argv>`` in ``num_processes`` processes on this machine."""
    if num_processes < 2:
        raise ValueError(f"--num-processes must be >= 2 to launch, got {num_processes}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={num_processes}", "-m", "lreorg_hub.cli", *argv]


class Parallel:
    """Who this process is in the run, and the few collectives the trainer needs.

    ``Parallel()`` is the single process (no accelerate at all); ``Parallel(accelerator)``
    wraps an ``accelerate.Accelerator``.
    """

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self.num_processes = 1 if accelerator is None else accelerator.num_processes
        self.index = 0 if accelerator is None else accelerator.process_index
        self.is_main = self.index == 0

    @property
    def active(self) -> bool:
        return self.num_processes > 1

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """DDP-wrap the trained module when several processes run; as is otherwise."""
        return self.accelerator.prepare_model(module) if self.active else module

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over processes of a small float tensor (the logged terms, the stop flag)."""
        if not self.active:
            return values
        return self.accelerator.reduce(values.to(self.accelerator.device), "mean").cpu()

    def barrier(self) -> None:
        if self.active:
            self.accelerator.wait_for_everyone()
