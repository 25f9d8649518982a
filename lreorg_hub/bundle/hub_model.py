"""What our Hub models share: loading through ``PyTorchModelHubMixin`` from a folder or a Hub
repo id, strictly, with one clear ``BundleError`` for every way a file can be wrong.

The mixin's own loading keeps random weights for missing tensors, silently converts integer
tensors into float ones and trusts index tensors; for a privacy model each of these would
quietly change what the draw does. Here, before any tensor is allocated: config.json is read
and range-checked (``check_config``), a shape-only model is built on the ``meta`` device and
every tensor's name, shape and dtype kind in model.safetensors is compared with it; after
loading: no NaN / ∞, and the model's own state checks (``state_problems``: e.g. a GIA
``member_group`` pointing at a group that does not exist).
"""

from __future__ import annotations

import json
import os

import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError,
                                    LocalEntryNotFoundError, OfflineModeIsEnabled,
                                    RepositoryNotFoundError, RevisionNotFoundError)
from safetensors import SafetensorError
from safetensors.torch import load_model

from ..reachability import hub_reachable
from .checks import BundleError, check_finite, check_weights_match, read_config

__all__ = ["StrictHubModel"]


class StrictHubModel(PyTorchModelHubMixin):
    """Mixin for our models saved as config.json + model.safetensors (see module notes).

    Subclasses set ``what`` / ``a_what`` (e.g. "LReOrg bundle" / "an LReOrg bundle") and ``advice`` (what to do when it cannot be
    found) and may override ``check_config`` and ``state_problems``.
    """

    what: str = "model"        # "the {what}"
    a_what: str = "a model"    # "is not {a_what}"
    advice: str = ""

    @classmethod
    def check_config(cls, config: dict, where: str) -> None:
        """Type and range checks of config.json's values (BundleError), before any tensor."""

    def state_problems(self) -> list[str]:
        """Loaded tensors that are well-formed but mean something impossible."""
        return []

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load from a local folder or a Hub repo id (strict; ``map_location`` places the model,
        ``dtype`` is passed to ``_apply_dtype``)."""
        path = str(pretrained_model_name_or_path)
        looks_local = (os.path.isabs(path) or path.startswith(".") or os.path.exists(path)
                       or path.startswith("~"))
        if looks_local:
            path = os.path.expanduser(path)
            if not os.path.isdir(path):
                raise BundleError(f"{path} is not a folder with {cls.a_what} (config.json + "
                                  f"model.safetensors). {cls.advice}".rstrip())
            read_config(os.path.join(path, constants.CONFIG_NAME), path, cls.a_what)
        elif not kwargs.get("local_files_only") and not hub_reachable():
            # One short probe instead of huggingface_hub's ~23 s of retries: use the cache.
            kwargs["local_files_only"] = True
        revision = kwargs.get("revision")
        try:
            return super().from_pretrained(path, **kwargs)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
            raise cls._offline_error(path, revision) from e
        except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as e:
            raise BundleError(f"{path!r} (revision {revision or 'main'}) is not {cls.a_what} "
                              f"on the Hub ({type(e).__name__}). {cls.advice}".rstrip()) from e
        except HFValidationError as e:
            raise BundleError(f"{path!r} is neither a folder nor a valid Hub repo id "
                              f"(namespace/name). {cls.advice}".rstrip()) from e
        except json.JSONDecodeError as e:  # the Hub copy's config.json (local ones: above)
            raise BundleError(f"config.json of the {cls.what} {path!r} is not valid JSON "
                              f"({e})") from e

    @classmethod
    def _offline_error(cls, repo_id: str, revision: str | None) -> BundleError:
        return BundleError(
            f"could not load the {cls.what} {repo_id!r} (revision {revision or 'main'}): it is "
            f"not a local folder, the Hub is unreachable or offline (HF_HUB_OFFLINE) and it is "
            f"not in the local cache. {cls.advice}".rstrip())

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir,
                         force_download: bool, local_files_only: bool, token,
                         map_location: str | torch.device = "cpu", strict: bool = True,
                         dtype: torch.dtype | None = None, **model_kwargs):
        """Strict by default, every check before the weights are trusted; the model ends on
        ``map_location`` (the mixin only reads tensors there)."""
        if os.path.isdir(model_id):
            read_config(os.path.join(model_id, constants.CONFIG_NAME), model_id, cls.a_what)
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise BundleError(f"{model_id} is not {cls.a_what}: model.safetensors is "
                                  f"missing")
        else:
            try:
                model_file = hf_hub_download(model_id, constants.SAFETENSORS_SINGLE_FILE,
                                             revision=revision, cache_dir=cache_dir,
                                             force_download=force_download, token=token,
                                             local_files_only=local_files_only)
            except EntryNotFoundError as e:
                if isinstance(e, LocalEntryNotFoundError):
                    raise cls._offline_error(model_id, revision) from e
                raise BundleError(f"{model_id!r} has no model.safetensors: not "
                                  f"{cls.a_what}") from e
        where = f"config.json of {model_id}"
        cls.check_config(model_kwargs, where)
        try:
            with torch.device("meta"):  # shapes only: nothing allocated before the checks
                shapes = cls(**model_kwargs)
        except (TypeError, ValueError) as e:
            raise BundleError(f"{where} does not describe {cls.a_what}: {e}") from None
        check_weights_match(shapes, model_file)
        model = cls(**model_kwargs)
        try:
            load_model(model, model_file, strict=strict)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise BundleError(f"{model_file} could not be read: it is corrupted or truncated "
                              f"({e}); download it again") from None
        check_finite(model, model_file)
        problems = model.state_problems()
        if problems:
            raise BundleError(f"{model_file} holds impossible values: " + "; ".join(problems)
                              + "; the weights are damaged or were tampered with")
        model.to(device=map_location)
        model._apply_dtype(dtype)
        return model.eval()

    def _apply_dtype(self, dtype: torch.dtype | None) -> None:
        if dtype is not None:
            self.to(dtype=dtype)
