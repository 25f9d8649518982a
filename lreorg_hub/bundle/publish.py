"""Publishing a bundle on the Hugging Face Hub: the model card and the upload.

``build_upload_folder`` writes exactly what ``push`` uploads (config.json, model.safetensors and
the rendered README.md) so ``lreorg push --dry-run --out DIR`` can be inspected before anything
leaves the machine. The card is rendered from ``model_cards/lreorg.md`` with:

- metadata (licence, library_name, tags, pipeline_tag, base_model = the backbone repo with its
  pinned revision in ``base_model_revision``),
- the evaluation table, filled from ``lreorg eval``'s results.json,
- the measured CDFNet round-trip error, from ``training.json`` in the bundle folder (written by
  ``lreorg train``; any JSON object with a numeric ``roundtrip_error`` field works).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import HfApi, constants

from .card import read_eval_results, read_training_metadata, render_card
from .lreorg import LReOrg
from .vetting import PublishRefused, publication_problems

__all__ = ["UPLOAD_FILES", "HubUnavailableError", "PublishRefused", "build_upload_folder",
           "push"]

#: What a published bundle repo holds: nothing else is uploaded.
UPLOAD_FILES = ("README.md", "config.json", "model.safetensors")


class HubUnavailableError(RuntimeError):
    """The Hub cannot be reached (offline mode, no network, refused credentials)."""


def _pin(model: LReOrg, backbone_revision: str | None) -> None:
    if backbone_revision is not None:
        model.backbone["revision"] = backbone_revision


def build_upload_folder(bundle: str | Path, out: str | Path, *, repo_id: str | None = None,
                        eval_results: str | Path | dict | None = None,
                        backbone_revision: str | None = None,
                        backbone_file: str | Path | None = None) -> Path:
    """Write exactly the folder ``push`` uploads: config.json (backbone revision pinned),
    model.safetensors and the rendered README.md. ``out`` must be new or empty.

    Raises ``PublishRefused`` (one line per reason, see ``vetting``) before writing anything
    when the bundle's records do not show what the card would claim; ``backbone_file`` is a
    local copy of the backbone to check its sha256 against (default: the Hub / its cache).
    """
    bundle = Path(bundle)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not an empty folder; choose a new --out")
    model = LReOrg.from_pretrained(bundle)
    _pin(model, backbone_revision)
    results = (read_eval_results(eval_results) if isinstance(eval_results, (str, Path))
               else eval_results)
    problems = publication_problems(model, bundle, results, backbone_file)
    if problems:
        raise PublishRefused(bundle, problems)
    card = render_card(model, repo_id, results, read_training_metadata(bundle))
    model.save_pretrained(out)
    card.save(out / "README.md")  # the card with the Hub metadata replaces the default one
    written = sorted(p.name for p in out.iterdir())
    if written != sorted(UPLOAD_FILES):  # the mixin changed what it writes: do not guess
        raise RuntimeError(f"unexpected files in the upload folder: {written}")
    return out


def push(bundle: str | Path, repo_id: str, *, eval_results: str | Path | dict | None = None,
         backbone_revision: str | None = None, backbone_file: str | Path | None = None,
         private: bool = False, token: str | None = None,
         commit_message: str = "Upload LReOrg bundle") -> str:
    """Create the model repo if needed and upload the bundle; returns the commit URL.

    Fails with ``HubUnavailableError`` before building anything when the Hub is in offline
    mode, and wraps network and authentication errors in one clear message.
    """
    if constants.HF_HUB_OFFLINE:
        raise HubUnavailableError(
            f"cannot push to {repo_id}: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE). "
            f"Unset it on a machine with internet access and a token (`hf auth login`); "
            f"`lreorg push BUNDLE REPO_ID --dry-run --out DIR` writes what would be uploaded")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_upload_folder(bundle, Path(tmp) / "upload", repo_id=repo_id,
                                     eval_results=eval_results,
                                     backbone_revision=backbone_revision,
                                     backbone_file=backbone_file)
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                                     commit_message=commit_message,
                                     allow_patterns=list(UPLOAD_FILES))
        except Exception as e:  # httpx / HfHubHTTPError / OfflineModeIsEnabled / auth errors
            raise HubUnavailableError(
                f"could not push to {repo_id}: {type(e).__name__}: {e}. Check the network, "
                f"that you are logged in (`hf auth login` or HF_TOKEN) with write access, and "
                f"the repo id (namespace/name)") from e
    return getattr(info, "commit_url", str(info))
