"""Where the backbone checkpoint comes from: a local file or a Hub repo (id, file, revision),
overridable by environment variables, and its download with a clear message offline."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

__all__ = ["BackboneSource", "BackboneNotAvailableError", "download_backbone", "ENV_REPO",
           "ENV_FILE", "ENV_REVISION", "ENV_PATH"]

ENV_REPO = "LREORG_BACKBONE_REPO"


ENV_FILE = "LREORG_BACKBONE_FILE"


ENV_REVISION = "LREORG_BACKBONE_REVISION"


ENV_PATH = "LREORG_BACKBONE_PATH"  # a local checkpoint file; skips the Hub entirely


class BackboneNotAvailableError(FileNotFoundError):
    """The backbone checkpoint could not be found locally nor downloaded."""


@dataclass(frozen=True)
class BackboneSource:
    """Hub location of the backbone checkpoint (configuration, never hard-wired).

    ``format`` is "e4e" (encoder + decoder) or "rosinality" (generator only); ``size`` is
    the expected generator resolution (a mismatch with the file is logged; the file wins).
    :func:`download_backbone` applies the ``LREORG_BACKBONE_*`` environment overrides.
    """

    repo_id: str = "AIRI-Institute/HairFastGAN"
    filename: str = "pretrained_models/encoder4editing/e4e_ffhq_encode.pt"
    revision: str = "main"
    format: str = "e4e"
    size: int | None = 1024

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "BackboneSource":
        """Build from a plain dict (e.g. a bundle's config), ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    def with_env(self, environ: Mapping[str, str] | None = None) -> "BackboneSource":
        """Override fields from ``LREORG_BACKBONE_REPO`` / ``_FILE`` / ``_REVISION``."""
        env = os.environ if environ is None else environ
        changes = {name: env[var] for name, var in (("repo_id", ENV_REPO),
                                                    ("filename", ENV_FILE),
                                                    ("revision", ENV_REVISION))
                   if env.get(var)}
        return replace(self, **changes) if changes else self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **defaults) -> "BackboneSource":
        """Defaults (or ``defaults``), overridden by the environment variables."""
        return cls(**defaults).with_env(environ)

    def describe(self) -> str:
        return f"{self.repo_id}/{self.filename}@{self.revision}"


def download_backbone(source: BackboneSource | None = None, *, cache_dir: str | Path | None = None,
                      local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """Fetch the checkpoint with ``huggingface_hub.hf_hub_download`` (cached) → local path.

    Raises :class:`BackboneNotAvailableError` with instructions when the file is not in
    the cache and the Hub cannot be reached (offline mode, no network, ``local_files_only``),
    and when the repo, revision or file does not exist.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from ..reachability import hub_reachable

    src = (source or BackboneSource()).with_env()
    if not local_files_only and not hub_reachable():
        # One short probe instead of huggingface_hub's ~23 s of retries: use the cache.
        local_files_only = True
    try:
        path = hf_hub_download(src.repo_id, src.filename, revision=src.revision,
                               cache_dir=cache_dir, local_files_only=local_files_only,
                               token=token)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise BackboneNotAvailableError(_offline_message(src, e)) from e
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as e:
        raise BackboneNotAvailableError(
            f"The backbone repo/revision {src.repo_id}@{src.revision} is not available on "
            f"the Hub ({type(e).__name__}). Check {ENV_REPO} / {ENV_REVISION}, log in if "
            f"the repo is gated, or load a local file ({ENV_PATH}=/path/to/file.pt)."
        ) from e
    except EntryNotFoundError as e:
        raise BackboneNotAvailableError(
            f"{src.filename!r} does not exist in {src.repo_id}@{src.revision}. Check "
            f"{ENV_FILE}, or load a local file ({ENV_PATH}=/path/to/file.pt).") from e
    except HfHubHTTPError as e:
        raise BackboneNotAvailableError(_offline_message(src, e)) from e
    return Path(path)


def _offline_message(src: BackboneSource, err: Exception) -> str:
    return (
        f"Could not obtain the backbone checkpoint {src.describe()}: it is not in the local "
        f"Hugging Face cache and the Hub could not be reached ({type(err).__name__}; "
        f"offline mode, HF_HUB_OFFLINE=1, local_files_only, or no network).\n"
        f"To fix, either:\n"
        f"  - on a machine with internet access run\n"
        f"      hf download {src.repo_id} {src.filename} --revision {src.revision}\n"
        f"    and copy the Hugging Face cache (HF_HOME) here, or\n"
        f"  - download the file by any means and point at it: set {ENV_PATH}=/path/to/"
        f"{Path(src.filename).name} or call load_backbone('/path/to/file.pt'), or\n"
        f"  - use another copy on the Hub via {ENV_REPO}, {ENV_FILE} and {ENV_REVISION}."
    )
