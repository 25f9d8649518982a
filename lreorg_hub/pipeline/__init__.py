"""Photos in, protected photos out: one options type, one result type, the methods' runners
and the batch runner that composes the stages (detect → align → encode → protect →
generate → paste).

Layer 3. May import: ``lreorg_hub.image``, ``lreorg_hub.backbones``, ``lreorg_hub.bundle``,
``lreorg_hub.method``, ``lreorg_hub.privacy``. Never serving, cli, dataset, training or
evaluation. Names are loaded lazily, so ``lreorg_hub.pipeline.registry`` needs no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LReOrgPipeline": "photos", "PipelineResult": "results", "FaceResult": "results",
    "NoFaceError": "results", "ProtectOptions": "options", "METHODS": "registry",
    "MethodInfo": "registry", "MAX_SAMPLES": "options", "MAX_SEED": "options",
    "STRENGTH_LIMITS": "options", "check_faces": "options", "check_output_size": "options",
    "check_method": "options", "KeywordSupport": "methods", "auto_device": "devices",
    "check_device": "devices", "run_batch": "runner", "VideoOptions": "video",
    "VideoResult": "video", "anonymize_video": "video",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
