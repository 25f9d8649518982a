"""Fitted style-mix groups on disk and on the Hub (the method is
``lreorg_hub.method.stylemix``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from ..method.stylemix import StyleMixModule

__all__ = ["StyleMixAnonymizer"]

CONFIG_NAME = "style_mix_config.json"


WEIGHTS_NAME = "style_mix.safetensors"


class StyleMixAnonymizer(StyleMixModule):
    """Fitted style-mix groups (``StyleMixModule``) that save to and load from a folder or the
    Hub."""

    # -- saving and loading ------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write style_mix_config.json and style_mix.safetensors (fitted groups only)."""
        if not self.fitted:
            raise RuntimeError("refusing to save unfitted style-mix groups")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.get_config(), indent=2))
        save_model(self, str(directory / WEIGHTS_NAME), metadata={"format": "pt",
                                                                   "method": "style-mix"})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, revision: str | None = None,
                        map_location: str | torch.device = "cpu") -> "StyleMixAnonymizer":
        """Load fitted groups from a folder (or a Hub repo id) written by ``save_pretrained``;
        strict: every tensor must be there with the configured shape."""
        path = str(directory)
        if os.path.isdir(path):
            config_file, weights_file = Path(path) / CONFIG_NAME, Path(path) / WEIGHTS_NAME
            for f in (config_file, weights_file):
                if not f.is_file():
                    raise FileNotFoundError(f"{path} has no fitted style-mix groups: {f.name} "
                                            f"is missing")
        elif os.path.exists(path) or os.path.isabs(path) or path.startswith("."):
            raise FileNotFoundError(f"{path} is not a folder with fitted style-mix groups")
        else:
            from huggingface_hub import hf_hub_download
            config_file = Path(hf_hub_download(path, CONFIG_NAME, revision=revision))
            weights_file = Path(hf_hub_download(path, WEIGHTS_NAME, revision=revision))
        try:
            config = json.loads(config_file.read_text("utf-8"))
            model = cls(**config)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{config_file} is not a valid style-mix configuration: {e}") from None
        try:
            load_model(model, str(weights_file), strict=True)
        except Exception as e:  # safetensors' header/shape errors: name the file
            raise ValueError(f"{weights_file} does not hold style-mix groups matching "
                             f"{config_file.name}: {e}") from None
        if not model.fitted:
            raise ValueError(f"{weights_file} holds unfitted style-mix groups")
        return model.to(map_location).eval()
