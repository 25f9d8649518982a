"""What ``lreorg push`` refuses to publish, one line per problem.

A bundle is published only when its records (config.json's ``provenance``, written by
``lreorg train`` and ``lreorg fit-anonymizers``; results.json's, written by ``lreorg eval``)
show that it was made with real weights, on the backbone the card names, pinned to a commit,
and evaluated as this very bundle. Unfitted anonymizers are not a refusal: the card names
them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..method import keywords as kw
from .digests import RANDOM, sha256_file

__all__ = ["PublishRefused", "publication_problems", "bundle_sha256", "backbone_file_sha256",
           "unfitted_anonymizers"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class PublishRefused(ValueError):
    """The bundle may not be published; ``problems`` holds one line per reason."""

    def __init__(self, bundle, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"refusing to publish {bundle}:\n"
                         + "\n".join(f"  - {p}" for p in self.problems))


def bundle_sha256(bundle_dir: str | Path) -> str:
    """The sha256 of a bundle folder's model.safetensors (what ``lreorg eval`` records)."""
    return sha256_file(Path(bundle_dir) / "model.safetensors")


def unfitted_anonymizers(model) -> list[str]:
    """Names of the bundle's anonymizers that were never fitted."""
    names = [] if bool(model.identity_anonymizer.fitted) else ["identity (GIA)"]
    return names + [n for n in model.keywords
                    if n != kw.IDENTITY and not bool(model.attribute_anonymizer(n).fitted)]


def backbone_file_sha256(backbone: dict, local_file: str | Path | None = None):
    """(sha256, where it came from) of the file the card names, or (None, why not).

    ``local_file`` (push --backbone) wins; otherwise the Hub's LFS record of the pinned file,
    then the file in the local Hugging Face cache.
    """
    from huggingface_hub import HfApi, hf_hub_download

    from ..reachability import hub_reachable

    if local_file is not None:
        return sha256_file(local_file), str(local_file)
    repo, name, rev = backbone.get("repo_id"), backbone.get("filename"), backbone.get("revision")
    if hub_reachable():
        try:
            for entry in HfApi().get_paths_info(repo, [name], revision=rev):
                if getattr(entry, "lfs", None) is not None:
                    return entry.lfs.sha256, f"the Hub's LFS record of {repo}/{name}@{rev}"
        except Exception:  # noqa: BLE001 — any Hub error: fall back to the cache
            pass
    try:
        path = hf_hub_download(repo, name, revision=rev, local_files_only=True)
        return sha256_file(path), f"the cached {repo}/{name}@{rev}"
    except Exception:  # noqa: BLE001 — not cached (LocalEntryNotFoundError and friends)
        return None, (f"{repo}/{name}@{rev} is not in the Hugging Face cache and the Hub "
                      f"gave no LFS record")


def _scorer_problems(record: dict | None, what: str, fix: str) -> list[str]:
    if not record:
        return [f"{what}: no record of its weights ({fix})"]
    if record.get("weights") == RANDOM:
        return [f"{what} had random weights (pretrained: null); {fix}"]
    return []


def _backbone_problems(model, training: dict, fitting: dict | None,
                       local_file) -> list[str]:
    used = training.get("backbone") or {}
    named = model.backbone
    problems = []
    if not used.get("sha256"):
        return ["training recorded no backbone file (sha256); train with `lreorg train`"]
    if named.get("size") != used.get("size"):
        problems.append(f"the card names a {named.get('size')} px backbone but training "
                        f"used a {used.get('size')} px generator ({_where(used)})")
    if model.cdfnet.num_rows != used.get("n_latent"):
        problems.append(f"CDFNet takes {model.cdfnet.num_rows} W+ rows but training used a "
                        f"generator with {used.get('n_latent')} ({_where(used)})")
    if fitting and (fitting.get("backbone") or {}).get("sha256") != used["sha256"]:
        problems.append(f"fit-anonymizers read another backbone file "
                        f"({_where(fitting.get('backbone') or {})}) than training "
                        f"({_where(used)})")
    if str(named.get("repo_id", "")).startswith("local/"):
        return problems  # refused as unpinned; there is no Hub file to compare
    digest, origin = backbone_file_sha256(named, local_file)
    label = f"{named.get('repo_id')}/{named.get('filename')}@{named.get('revision')}"
    if digest is None:
        problems.append(f"cannot check the backbone {label}: {origin}; pass --backbone FILE "
                        f"(a copy of that file)")
    elif digest != used["sha256"]:
        problems.append(f"the backbone differs from the recorded one: {label} has sha256 "
                        f"{digest[:12]}… ({origin}) but training read {used['sha256'][:12]}… "
                        f"({_where(used)})")
    return problems


def _where(record: dict) -> str:
    if record.get("source") == "local":
        return f"local file {record.get('path')}"
    if record.get("repo_id"):
        return f"{record['repo_id']}/{record.get('filename')}@{record.get('revision')}"
    return "unknown"


def _results_problems(results: dict | None, bundle_dir) -> list[str]:
    if results is None:
        return []
    prov = (results.get("config") or {}).get("provenance") or {}
    recorded = (prov.get("bundle") or {}).get("sha256")
    problems = []
    if not recorded:
        problems.append("the evaluation records no bundle sha256 (results.json of an older "
                        "`lreorg eval`, or of the image baselines only): evaluate this bundle")
    else:
        mine = bundle_sha256(bundle_dir)
        if recorded != mine:
            problems.append(f"the evaluation is of another bundle: results.json records "
                            f"model.safetensors sha256 {recorded[:12]}… but this bundle's is "
                            f"{mine[:12]}…")
    fix = "evaluate with the published weights"
    problems += _scorer_problems(prov.get("judge"), "the evaluation's judge", fix)
    problems += _scorer_problems(prov.get("apr_clip"), "the evaluation's APR CLIP", fix)
    return problems


def _pin_problems(model) -> list[str]:
    repo = str(model.backbone.get("repo_id"))
    if repo.startswith("local/"):  # demo and test bundles name a local file, not a Hub repo
        return [f"the bundle's backbone is {repo!r}, a local checkpoint, not a Hub repo: a "
                f"published bundle must name the public backbone it works with (set "
                f"bundle.backbone when training on a local copy)"]
    revision = str(model.backbone.get("revision"))
    if not _COMMIT.match(revision):
        return [f"the bundle's backbone revision is {revision!r}, not a commit: pass the "
                f"40-character commit of {repo} with --backbone-revision"]
    return []


def publication_problems(model, bundle_dir, results: dict | None = None,
                         backbone_file: str | Path | None = None) -> list[str]:
    """Every reason not to publish (empty: publishable). ``model`` has its backbone revision
    already pinned as it will be published."""
    problems = _pin_problems(model)
    prov = model.provenance or {}
    training = prov.get("training")
    if not training:
        problems.append("the bundle records no training provenance (config.json has no "
                        "provenance.training): train it with `lreorg train`")
    else:
        fix = "train with the published weights"
        problems += _scorer_problems(training.get("identity_encoder"),
                                     "training's identity encoder", fix)
        problems += _scorer_problems(training.get("clip"), "training's CLIP", fix)
    fitting = prov.get("fitting")
    attributes_fitted = any(bool(model.attribute_anonymizer(n).fitted)
                            for n in model.keywords if n != kw.IDENTITY)
    if fitting:
        if any(k != kw.IDENTITY for k in fitting.get("keywords") or []):  # CLIP labelled
            problems += _scorer_problems(fitting.get("clip"), "fit-anonymizers' CLIP",
                                         "refit with the published weights")
    elif attributes_fitted or bool(model.identity_anonymizer.fitted):
        problems.append("the anonymizers are fitted but the bundle has no provenance.fitting: "
                        "fit them with `lreorg fit-anonymizers`")
    if training:
        problems += _backbone_problems(model, training, fitting, backbone_file)
    problems += _results_problems(results, bundle_dir)
    return problems
