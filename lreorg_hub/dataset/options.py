"""What a dataset run does to every item, and how each process builds its pipeline."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..pipeline.options import ProtectOptions

__all__ = ["DatasetOptions", "PipelineSpec", "DatasetRunError", "ENGINES", "NO_FACE_ACTIONS",
           "NO_FACE_NOTES"]

ENGINES = ("local", "ray")
NO_FACE_ACTIONS = ("drop", "pass")
#: What the record of an item without a face says, per ``--no-face`` choice.
NO_FACE_NOTES = {
    "drop": "No face was found, so nothing was anonymized: the item is left out of the "
            "output (--no-face drop, the default).",
    "pass": "No face was found, so nothing was anonymized: the item is published UNCHANGED "
            "(only its metadata stripped) because --no-face pass was asked for. A face the "
            "detector missed is visible in it.",
}


class DatasetRunError(ValueError):
    """The run cannot start or continue (settings differ from the run in --out, …)."""


@dataclass
class DatasetOptions:
    """What is done to every item: ``protect`` (the library's one options type: method,
    keywords, ε, …, aligned; no seed: each item's comes from the key) and how the run treats
    items without a face ("drop", the default: left out of the output and listed; "pass":
    published unchanged, metadata stripped, and its record says so: a face the detector
    missed would be published as it is), its
    batch size and its shard size. An option that does not apply to the method is an error,
    reported before any item is read."""

    protect: ProtectOptions = field(default_factory=ProtectOptions)
    no_face: str = "drop"
    batch_size: int = 16
    shard_size: int = 64

    def __post_init__(self):
        if isinstance(self.protect, dict):  # from asdict() (a Ray actor's copy)
            self.protect = ProtectOptions(**self.protect)
        if self.protect.seed is not None:
            raise ValueError("a dataset run takes no seed: each item's comes from the key "
                             "file (HMAC of the master secret and the item id)")
        if self.no_face not in NO_FACE_ACTIONS:
            raise ValueError(f"no_face must be 'drop' or 'pass', got {self.no_face!r}")
        for name in ("batch_size", "shard_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    def settings(self) -> dict:
        """What must not change between a run and its resumption (JSON values)."""
        d = json.loads(json.dumps(asdict(self)))
        d.pop("batch_size")  # only changes float rounding, not what is done
        return d


@dataclass
class PipelineSpec:
    """How each process builds its own pipeline (picklable; loaded once per Ray actor)."""

    bundle: str | None = None
    backbone: str | None = None
    revision: str | None = None
    style_mix: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    output_size: int | None = None
    min_face_size: int = 20
    max_faces: int = 64

    def build(self):
        import torch

        from ..pipeline import LReOrgPipeline

        dtype = getattr(torch, self.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.bundle is None and self.backbone is None and self.style_mix is None:
            # image baselines only
            pipe = LReOrgPipeline(device=self.device, min_face_size=self.min_face_size,
                                  max_faces=self.max_faces)
        else:
            pipe = LReOrgPipeline.from_pretrained(
                self.bundle, backbone=self.backbone, revision=self.revision,
                style_mix=self.style_mix, device=self.device, output_size=self.output_size,
                min_face_size=self.min_face_size, max_faces=self.max_faces)
        return pipe.to(dtype=dtype) if pipe.generator is not None else pipe

    def settings(self) -> dict:
        return {"bundle": self.bundle, "backbone": self.backbone, "revision": self.revision,
                "style_mix": self.style_mix, "output_size": self.output_size,
                "min_face_size": self.min_face_size, "max_faces": self.max_faces}
