"""Files of our own: the LReOrg bundle and the style-mix groups (config.json checks, strict
safetensors loading, the Hub mixin) and the model card and its upload.

Layer 2. May import: ``lreorg_hub.method``, ``lreorg_hub.privacy``, ``lreorg_hub.reachability``,
huggingface_hub, safetensors. Not the image side, not the pipeline or anything above it.
"""

from .checks import BundleError
from .lreorg import LReOrg, NO_BUNDLE_ADVICE
from .stylemix import StyleMixAnonymizer
from ..method.lreorg import DEFAULT_BACKBONE, DEFAULT_TEXT_ENCODER, ReorganizeResult

__all__ = ["LReOrg", "BundleError", "StyleMixAnonymizer", "ReorganizeResult",
           "DEFAULT_BACKBONE", "DEFAULT_TEXT_ENCODER", "NO_BUNDLE_ADVICE"]
