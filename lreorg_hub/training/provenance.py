"""What made a bundle: the backbone file and scorer weights a run actually used.

Recorded in the bundle's config.json under ``provenance`` ("training" by ``lreorg train``,
"fitting" by ``lreorg fit-anonymizers``) and checked by ``lreorg push``:

- backbone: where it came from ("hub": repo, file, the resolved commit; "local": the path),
  the sha256 of the file, the generator's resolution, W+ rows and width;
- each scorer: its class and model name, the weights it was built from (an open_clip tag,
  "vggface2", a file path, or "random" for ``pretrained: null``) and the sha256 of its
  loaded state dict (names, dtypes, shapes and bytes, in name order), which identifies the
  numbers used whatever file format they came in.

A seed is recorded only when the user chose it (an OS-entropy seed is never written).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..bundle.digests import RANDOM, sha256_file, sha256_state

__all__ = ["sha256_file", "sha256_state", "describe_backbone", "describe_scorer",
           "hub_commit_of", "RANDOM"]

_SNAPSHOT = re.compile(r"snapshots[/\\]([0-9a-f]{40})[/\\]")


def hub_commit_of(path: str | os.PathLike) -> str | None:
    """The commit of a file in the Hugging Face cache (…/snapshots/<commit>/…), or None."""
    match = _SNAPSHOT.search(str(path))
    return match.group(1) if match else None


def describe_backbone(backbone, path: str | os.PathLike, source=None) -> dict:
    """The backbone a run used: ``path`` is the file that was read; ``source`` the
    ``BackboneSource`` it was downloaded for (None: a local file)."""
    g = backbone.generator
    record = {"sha256": sha256_file(path), "size": int(g.size), "n_latent": int(g.n_latent),
              "style_dim": int(g.style_dim)}
    if source is None:
        return {"source": "local", "path": str(path), **record}
    return {"source": "hub", "repo_id": source.repo_id, "filename": source.filename,
            "revision": hub_commit_of(path) or source.revision, "format": source.format,
            **record}


def describe_scorer(encoder) -> dict:
    """An ``IdentityEncoder`` or ``KeywordEncoder``: class, model, weights, state sha256."""
    pretrained = getattr(encoder, "pretrained", None)
    record = {"class": type(encoder).__name__,
              "weights": RANDOM if pretrained is None else str(pretrained)}
    if getattr(encoder, "model_name", None):
        record["model_name"] = encoder.model_name
    if pretrained is not None and Path(str(pretrained)).is_file():
        record["file_sha256"] = sha256_file(pretrained)
    record["state_sha256"] = sha256_state(encoder)
    return record
