"""Training checkpoints: everything a bit-for-bit continuation needs, as safetensors + JSON.

``OUT/checkpoints/step-NNNNNNNN/`` holds ``weights.safetensors`` (CDFNet, keyword
embeddings), ``optimizer.safetensors`` (Adam's moments and step counts, the state of every
random generator, the held-out batch, the fp16 loss scale), ``state.json`` (step, Adam's
hyper-parameters, the bundle configuration) and ``config.json`` (the effective training
configuration). The random generators and weights are the same in every process of a
data-parallel run (see ``distributed``), so one copy resumes on any process count.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .config import RESUME_OVERRIDABLE, TrainingConfig

__all__ = ["latest_checkpoint", "save_checkpoint", "load_checkpoint"]


def latest_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the newest one under RUN/checkpoints or RUN."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = sorted(folder.glob("step-*/state.json")) if folder.is_dir() else []
        if found:
            return found[-1].parent
    raise FileNotFoundError(f"no training checkpoint in {path} (expected a step-NNNNNNNN "
                            f"folder with state.json)")


def save_checkpoint(trainer, directory: str | Path | None = None) -> Path:
    """Write the trainer's state; only the main process writes, every process waits."""
    if directory is None:
        directory = Path(trainer.config.out) / "checkpoints" / f"step-{trainer.step:08d}"
    directory = Path(directory)
    if trainer.parallel.is_main:
        _write(trainer, directory)
    trainer.parallel.barrier()
    return directory


def _write(trainer, directory: Path) -> None:
    tmp = directory.with_name(directory.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    trainer.sync_embeddings()
    weights = {f"cdfnet.{k}": v.detach().contiguous().cpu()
               for k, v in trainer.cdfnet.state_dict().items()}
    weights["keyword_embeddings"] = trainer.embeddings.detach().contiguous().cpu()
    save_file(weights, str(tmp / "weights.safetensors"))
    opt = trainer.optimizer.state_dict()
    tensors = {"rng.keyword": trainer.keyword_rng.get_state().clone(),
               "rng.latent": trainer.latent_rng.get_state().clone().cpu(),
               "heldout": trainer.heldout.detach().contiguous().cpu()}
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
    plain_scaler = None
    if trainer.scaler is not None:
        scaler = trainer.scaler.state_dict()
        tensors["scaler.scale"] = torch.tensor([float(scaler.get("scale", 1.0))],
                                               dtype=torch.float64)
        plain_scaler = {k: v for k, v in scaler.items() if k != "scale"}
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    plain = {"step": trainer.step, "keywords": trainer.keywords,
             "optimizer_param_groups": [{k: (list(v) if isinstance(v, tuple) else v)
                                         for k, v in g.items()} for g in opt["param_groups"]],
             "grad_scaler": plain_scaler,
             "latent_rng_device": trainer.latent_rng.device.type,
             "num_processes": trainer.parallel.num_processes,
             "roundtrip_error": trainer.last_roundtrip,
             "bundle_config": trainer.model.get_config()}
    (tmp / "state.json").write_text(json.dumps(plain, indent=2))
    (tmp / "config.json").write_text(json.dumps(trainer.config.to_dict(), indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)  # a crash mid-write never leaves a half checkpoint behind
    old = sorted(directory.parent.glob("step-*[0-9]"))[: -trainer.config.keep_checkpoints]
    for path in old:
        shutil.rmtree(path)


def load_checkpoint(trainer, path: str | Path) -> Path:
    """Continue from a checkpoint: weights, Adam state, RNG states, held-out batch, step.

    The checkpoint's configuration must equal the trainer's except for ``RESUME_OVERRIDABLE``
    values (steps, logging, output), or the continuation would not be the same computation.
    """
    directory = latest_checkpoint(path)
    saved = TrainingConfig.from_dict(json.loads((directory / "config.json").read_text()))
    mine, theirs = trainer.config.to_dict(), saved.to_dict()
    changed = sorted(k for k in mine if k not in RESUME_OVERRIDABLE and mine[k] != theirs[k])
    if changed:
        raise ValueError(f"cannot resume from {directory}: the configuration differs in "
                         f"{', '.join(changed)} (only {', '.join(RESUME_OVERRIDABLE)} may "
                         f"change when resuming)")
    plain = json.loads((directory / "state.json").read_text())
    weights = load_file(str(directory / "weights.safetensors"))
    trainer.cdfnet.load_state_dict({k[len("cdfnet."):]: v for k, v in weights.items()
                                    if k.startswith("cdfnet.")}, strict=True)
    with torch.no_grad():
        trainer.embeddings.copy_(weights["keyword_embeddings"])
    tensors = load_file(str(directory / "optimizer.safetensors"))
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()}
              for g in plain["optimizer_param_groups"]]
    trainer.optimizer.load_state_dict({"state": state, "param_groups": groups})
    if trainer.scaler is not None and plain.get("grad_scaler") is not None:
        trainer.scaler.load_state_dict({**plain["grad_scaler"],
                                        "scale": float(tensors["scaler.scale"])})
    trainer.keyword_rng.set_state(tensors["rng.keyword"])
    trainer.latent_rng.set_state(tensors["rng.latent"])
    trainer.heldout = tensors["heldout"].to(trainer.device)
    trainer.step = int(plain["step"])
    trainer.last_roundtrip = plain.get("roundtrip_error")
    trainer.sync_embeddings()
    return directory
