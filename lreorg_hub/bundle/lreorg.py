"""The LReOrg bundle on disk and on the Hub: one ``PyTorchModelHubMixin`` model, one
``config.json`` (shapes and plain values only) and one ``model.safetensors`` (every tensor,
anonymizer statistics included), loaded strictly. The method itself is
``lreorg_hub.method.lreorg.LReOrgModule``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import ModelCard

from ..method import keywords as kw
from ..method.lreorg import LReOrgModule
from .checks import check_lreorg_config
from .hub_model import StrictHubModel
from .terms import backbone_terms

__all__ = ["LReOrg", "NO_BUNDLE_ADVICE"]


def _card_template(name: str = "lreorg.md") -> str:
    """Read a card template from model_cards/ (the repo's top level in a checkout or an
    editable install; lreorg_hub/model_cards/ in a wheel, see pyproject's package-dir)."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package.parent / "model_cards", package / "model_cards"):
        if (folder / name).is_file():
            return (folder / name).read_text("utf-8")
    raise FileNotFoundError(f"model card template {name} not found next to {package}")


#: What to do while no trained bundle exists (said by every "bundle not found" error).
NO_BUNDLE_ADVICE = (
    "No trained LReOrg bundle is published yet. To try everything offline, write a "
    "random-weight demo with `lreorg demo-bundle DIR` and use --bundle DIR/bundle with "
    "LREORG_BACKBONE_PATH=DIR/backbone.pt (Python: lreorg_hub.demo.write_demo); with a bundle "
    "you trained or downloaded, pass its folder; the image baselines (--method blur, pixelate, "
    "mask) need no bundle.")


class LReOrg(LReOrgModule, StrictHubModel,
             library_name="lreorg-hub", license="mit", pipeline_tag="image-to-image",
             tags=["face-anonymization", "privacy", "differential-privacy", "stylegan2", "lreorg"],
             model_card_template=_card_template()):
    """The LReOrg bundle: ``LReOrgModule`` saved as config.json + model.safetensors (+ the
    model card) and loaded strictly from a folder or the Hub (``StrictHubModel``).

    ``provenance`` (config.json) records what made the bundle: under "training" the backbone
    file and scorer weights ``lreorg train`` used, under "fitting" those of
    ``lreorg fit-anonymizers`` (see ``lreorg_hub.training.provenance``); None for a bundle
    made otherwise. ``lreorg push`` checks it.
    """

    what = "LReOrg bundle"
    a_what = "an LReOrg bundle"
    advice = NO_BUNDLE_ADVICE

    def __init__(self, *args, provenance: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if provenance is not None and not isinstance(provenance, dict):
            raise ValueError(f"provenance must be an object, got {provenance!r}")
        self.provenance = provenance

    def get_config(self) -> dict:
        config = super().get_config()
        if self.provenance:
            config["provenance"] = self.provenance
        return config

    # -- Hub: saving and strict loading ------------------------------------------------------
    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        fitted = {"identity (GIA)": bool(self.identity_anonymizer.fitted)}
        fitted.update({n: bool(self.attribute_anonymizer(n).fitted)
                       for n in self.keywords if n != kw.IDENTITY})
        kwargs.setdefault("config_json", json.dumps(self.get_config(), indent=2, sort_keys=True))
        kwargs.setdefault("keywords", self.keywords)
        kwargs.setdefault("fitted", fitted)
        kwargs.setdefault("backbone", self.backbone)
        kwargs.setdefault("text_encoder", self.text_encoder)
        from .vetting import unfitted_anonymizers

        kwargs.setdefault("provenance", self.provenance or {})
        kwargs.setdefault("unfitted", unfitted_anonymizers(self))
        kwargs.setdefault("terms", backbone_terms(self.backbone))
        return super().generate_model_card(*args, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None,
                        **kwargs) -> str | None:
        """Write config.json, model.safetensors and a model card (README.md, regenerated).

        The card is rendered first, so a missing Jinja2 fails before anything is written.
        """
        card = self.generate_model_card(**(kwargs.pop("model_card_kwargs", None) or {}))
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        card.save(save_directory / "README.md")
        return super().save_pretrained(save_directory, config=config or self.get_config(),
                                       **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "LReOrg":
        """Load a bundle from a local folder or a Hub repo id (strict; ``map_location`` places
        the model, ``dtype`` sets CDFNet's dtype, the anonymizers' statistics stay float32)."""
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def check_config(cls, config: dict, where: str) -> None:
        check_lreorg_config(config, where)

    def state_problems(self) -> list[str]:
        problems = self.identity_anonymizer.state_problems()
        return [f"identity_anonymizer.{p}" for p in problems]

    def _apply_dtype(self, dtype: torch.dtype | None) -> None:
        if dtype is not None:  # CDFNet only: the anonymizers' statistics stay float32
            self.cdfnet.to(dtype=dtype)
