"""lreorg-hub: LReOrg face anonymization (latent representation reorganization).

``import lreorg_hub`` stays light (no torch) until a model class is touched. The folder tree
shows the layers (docs/ARCHITECTURE.md): ``privacy`` and ``method`` at the bottom, then
``bundle``, ``backbones``, ``scorers`` and ``image``, then ``pipeline``, then ``serving``,
``dataset``, ``training`` and ``evaluation``, and ``cli`` (with ``app.py``) on top.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LReOrg": "bundle", "BundleError": "bundle", "StyleMixAnonymizer": "bundle",
    "ReorganizeResult": "method.lreorg", "LReOrgModule": "method.lreorg",
    "CDFNet": "method.cdfnet",
    "IdentityAnonymizer": "method.anonymizers", "AttributeAnonymizer": "method.anonymizers",
    "LaplaceIdentityAnonymizer": "method.anonymizers",
    "KAnonymityIdentityAnonymizer": "method.anonymizers",
    "PrivacyRecord": "privacy",
    "LReOrgPipeline": "pipeline", "PipelineResult": "pipeline", "FaceResult": "pipeline",
    "NoFaceError": "pipeline", "METHODS": "pipeline", "ProtectOptions": "pipeline",
    "KEYWORDS": "method.keywords", "Keyword": "method.keywords",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'lreorg_hub' has no attribute {name!r}")
