"""The LReOrg bundle on disk and on the Hub: one ``PyTorchModelHubMixin`` model, one
``config.json`` (shapes and plain values only) and one ``model.safetensors`` (every tensor,
anonymizer statistics included), loaded strictly. The method itself is
``lreorg_hub.method.lreorg.LReOrgModule``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import ModelCard, PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError,
                                    LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import SafetensorError
from safetensors.torch import load_model

from ..method import keywords as kw
from ..method.lreorg import LReOrgModule
from ..reachability import hub_reachable
from .checks import BundleError, _check_config, _read_config, check_finite, check_weights_match

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


def _offline_error(repo_id: str, revision: str | None) -> BundleError:
    return BundleError(
        f"could not load the LReOrg bundle {repo_id!r} (revision {revision or 'main'}): it is "
        f"not a local folder, the Hub is unreachable or offline (HF_HUB_OFFLINE) and it is not "
        f"in the local cache. {NO_BUNDLE_ADVICE}")


def _not_on_hub_error(repo_id: str, revision: str | None, err: Exception) -> BundleError:
    return BundleError(
        f"{repo_id!r} (revision {revision or 'main'}) is not an LReOrg bundle on the Hub "
        f"({type(err).__name__}). {NO_BUNDLE_ADVICE}")


class LReOrg(LReOrgModule, PyTorchModelHubMixin,
             library_name="lreorg-hub", license="mit", pipeline_tag="image-to-image",
             tags=["face-anonymization", "privacy", "differential-privacy", "stylegan2", "lreorg"],
             model_card_template=_card_template()):
    """The LReOrg bundle: ``LReOrgModule`` saved as config.json + model.safetensors (+ the
    model card) and loaded strictly from a folder or the Hub.

    ``provenance`` (config.json) records what made the bundle: under "training" the backbone
    file and scorer weights ``lreorg train`` used, under "fitting" those of
    ``lreorg fit-anonymizers`` (see ``lreorg_hub.training.provenance``); None for a bundle
    made otherwise. ``lreorg push`` checks it.
    """

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
        from .card import backbone_terms  # card imports this module
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
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "LReOrg":
        """Load a bundle from a local folder or a Hub repo id (strict; ``map_location`` places
        the model, ``dtype`` sets CDFNet's dtype, the anonymizers' statistics stay float32)."""
        path = str(pretrained_model_name_or_path)
        looks_local = (os.path.isabs(path) or path.startswith(".") or os.path.exists(path)
                       or path.startswith("~"))
        if looks_local:
            path = os.path.expanduser(path)
            if not os.path.isdir(path):
                raise BundleError(f"{path} is not a folder with an LReOrg bundle (config.json + "
                                  f"model.safetensors). {NO_BUNDLE_ADVICE}")
            _read_config(os.path.join(path, constants.CONFIG_NAME), path)
        elif not kwargs.get("local_files_only") and not hub_reachable():
            # One short probe instead of huggingface_hub's ~23 s of retries: use the cache.
            kwargs["local_files_only"] = True
        revision = kwargs.get("revision")
        try:
            return super().from_pretrained(path, **kwargs)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
            raise _offline_error(path, revision) from e
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as e:
            raise _not_on_hub_error(path, revision, e) from e
        except HFValidationError as e:
            raise BundleError(f"{path!r} is neither a folder nor a valid Hub repo id "
                              f"(namespace/name). {NO_BUNDLE_ADVICE}") from e
        except json.JSONDecodeError as e:  # the Hub copy's config.json (local ones: above)
            raise BundleError(f"config.json of the bundle {path!r} is not valid JSON ({e})") \
                from e

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir, force_download: bool,
                         local_files_only: bool, token, map_location: str | torch.device = "cpu",
                         strict: bool = True, dtype: torch.dtype | None = None, **model_kwargs):
        """Strict by default (the mixin's default silently keeps random weights for missing
        tensors), and the model ends on ``map_location`` (the mixin only reads tensors there)."""
        if os.path.isdir(model_id):
            _read_config(os.path.join(model_id, constants.CONFIG_NAME), model_id)
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise BundleError(f"{model_id} is not an LReOrg bundle: model.safetensors is "
                                  f"missing")
        else:
            try:
                model_file = hf_hub_download(model_id, constants.SAFETENSORS_SINGLE_FILE,
                                             revision=revision, cache_dir=cache_dir,
                                             force_download=force_download, token=token,
                                             local_files_only=local_files_only)
            except EntryNotFoundError as e:
                if isinstance(e, LocalEntryNotFoundError):
                    raise _offline_error(model_id, revision) from e
                raise BundleError(f"{model_id!r} has no model.safetensors: not an LReOrg "
                                  f"bundle") from e
        _check_config(model_kwargs, f"config.json of {model_id}")
        try:
            with torch.device("meta"):  # shapes only: nothing allocated before the checks
                shapes = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise BundleError(f"config.json of {model_id} does not describe a valid bundle: "
                              f"{e}") from None
        check_weights_match(shapes, model_file)
        model = cls(**model_kwargs)
        try:
            load_model(model, model_file, strict=strict)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise BundleError(f"{model_file} could not be read: it is corrupted or truncated "
                              f"({e}); download the bundle again") from None
        check_finite(model, model_file)
        model.to(device=map_location)
        if dtype is not None:  # CDFNet only: the anonymizers' statistics stay float32
            model.cdfnet.to(dtype=dtype)
        model.eval()
        return model
