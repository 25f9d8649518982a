"""lreorg-hub: LReOrg face anonymization (latent representation reorganization).

``import lreorg_hub`` stays light (no torch) until a model class is touched.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LReOrg": "model", "ReorganizeResult": "model", "BundleError": "model",
    "CDFNet": "cdfnet",
    "IdentityAnonymizer": "anonymizers", "AttributeAnonymizer": "anonymizers",
    "LaplaceIdentityAnonymizer": "anonymizers", "KAnonymityIdentityAnonymizer": "anonymizers",
    "PrivacyRecord": "privacy",
    "LReOrgPipeline": "pipeline", "METHODS": "methods", "ProtectOptions": "methods",
    "StyleMixAnonymizer": "stylemix",
    "KEYWORDS": "keywords", "Keyword": "keywords",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'lreorg_hub' has no attribute {name!r}")
