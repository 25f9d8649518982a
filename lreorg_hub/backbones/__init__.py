"""Image backbones: the StyleGAN2 generator and the e4e encoder (reference layouts), and
loaders for the public checkpoints (local files or the Hugging Face Hub).

Nothing here downloads at import time; torch is imported (these are torch modules).
"""

from .checkpoints import (Backbone, BackboneNotAvailableError, BackboneSource,
                          CheckpointLayoutError, CheckpointReadError, build_encoder, build_generator,
                          download_backbone, load_backbone, load_e4e_checkpoint,
                          load_rosinality_checkpoint, read_checkpoint, strict_load)
from .e4e import E4EEncoder
from .stylegan2 import StyleGAN2Generator, truncate

__all__ = [
    "Backbone", "BackboneNotAvailableError", "BackboneSource", "CheckpointLayoutError",
    "CheckpointReadError", "E4EEncoder", "StyleGAN2Generator", "build_encoder", "build_generator",
    "download_backbone", "load_backbone", "load_e4e_checkpoint",
    "load_rosinality_checkpoint", "read_checkpoint", "strict_load", "truncate",
]
