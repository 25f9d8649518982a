"""Image backbones: the StyleGAN2 generator and the e4e encoder (reference layouts), and
loaders for the public checkpoints (local files or the Hugging Face Hub).

Layer 2. May import: ``lreorg_hub.method`` (init and rng helpers), ``lreorg_hub.reachability``,
torch, huggingface_hub. Nothing here downloads at import time.
"""

from .checkpoints import (CheckpointLayoutError, CheckpointReadError, build_encoder,
                          build_generator, read_checkpoint, strict_load)
from .e4e import E4EEncoder
from .loading import Backbone, load_backbone, load_e4e_checkpoint, load_rosinality_checkpoint
from .sources import BackboneNotAvailableError, BackboneSource, download_backbone
from .stylegan2 import StyleGAN2Generator, truncate

__all__ = [
    "Backbone", "BackboneNotAvailableError", "BackboneSource", "CheckpointLayoutError",
    "CheckpointReadError", "E4EEncoder", "StyleGAN2Generator", "build_encoder", "build_generator",
    "download_backbone", "load_backbone", "load_e4e_checkpoint",
    "load_rosinality_checkpoint", "read_checkpoint", "strict_load", "truncate",
]
