"""Evaluate every method on a folder of face photos (SPEC §6), resumable per photo.

For each photo the input faces are detected and aligned once; every method (and every ε of
the sweep) then runs through the one pipeline call, and each output face is judged in the same
aligned frame, cut from the *composed* output photo (what a viewer sees, paste-back
included):

- identity similarity of input and output crop under the judge recognizer (PSR),
- whether the detector still finds a face at that place in the output photo (detection),
- the CLIP zero-shot label of every attribute keyword on input and output (APR),
- image features of input and output crop (FID).

Per photo, the numbers go to ``OUT/records/<id>.json`` and the FID features to
``OUT/records/<id>.safetensors``; no pixels are written. A rerun with the same configuration
skips photos that already have a record, so an interrupted evaluation resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ..method import keywords as kw
from ..scorers import IdentityEncoder, KeywordEncoder
from ..image.faces import align_face, still_detected
from ..image.io import load_image, pil_to_tensor
from ..method.checks import check_epsilon
from ..pipeline.options import ProtectOptions
from ..pipeline.registry import METHODS
from . import metrics

__all__ = ["EvalConfig", "Evaluator", "ORIGINAL", "IMAGE_SUFFIXES", "collect_photos",
           "method_names", "epsilon_methods"]

#: The reference row of the paper's tables: the input itself as the "output".
ORIGINAL = "original"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
RECORD_VERSION = 1


def method_names(pipeline) -> list[str]:
    """Every method this pipeline can run with what is loaded, after the original row."""
    return [ORIGINAL] + list(pipeline.available_methods())


def epsilon_methods(methods: Sequence[str]) -> list[str]:
    """The methods among ``methods`` whose output depends on ε (swept for the plot)."""
    return [m for m in methods if m in METHODS and METHODS[m].uses_epsilon]


def method_label(method: str) -> str:
    if method == ORIGINAL:
        return "original (input)"
    return METHODS[method].label if method in METHODS else method


def collect_photos(folder: str | Path) -> list[Path]:
    """The image files under a folder (recursively), sorted; a clear error if none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of photos")
    photos = sorted(p for p in root.rglob("*")
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ValueError(f"no photos ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    return photos


@dataclass
class EvalConfig:
    """What is evaluated and how it is judged (written to OUT/eval_config.json).

    Args:
        methods: methods to run (None: every method the pipeline can run); "original" is the
            reference row (output = input) and is always included.
        anonymize, recover, epsilon, mechanism, rank_window: the latent methods' options
            (epsilon None: the bundle's default).
        epsilons: the ε sweep for the privacy–utility plot, run for every ε-method.
        attributes: keywords whose CLIP zero-shot label is compared for APR (those not
            anonymized by a run count for it).
        recovery_keywords: keywords of the recovery table (paper Table 8, lreorg only).
        threshold: the judge's verification threshold on cosine similarity (a pair with
            sim >= threshold is "the same person").
        detection_iou: an output face counts as detected when a detector box overlaps the
            input face's box by this IoU.
        seed: None (default) draws every run's randomness from OS entropy; an int makes the
            evaluation reproducible (per photo and run, derived from it; recorded).
        judge, fid_features: names of the judge recognizer and FID network (for the report).
        dataset: what the photos are, for the card's model-index: {"name", "type" (a Hub
            dataset id or "custom"), "split"}.
        provenance: what was evaluated and with which weights: {"bundle": {"sha256" of
            model.safetensors, "source"}, "judge": …, "apr_clip": …} (set by ``lreorg eval``;
            ``lreorg push`` checks it). Part of the configuration, so a resumed evaluation
            of another bundle or other scorer weights is refused.
    """

    methods: list[str] | None = None
    anonymize: list[str] = field(default_factory=lambda: list(kw.DEFAULT_ANONYMIZE))
    recover: list[str] = field(default_factory=lambda: list(kw.DEFAULT_RECOVER))
    epsilon: float | None = None
    mechanism: str = "window"
    rank_window: list[int] | None = None
    epsilons: list[float] = field(default_factory=lambda: [0.5, 1.0, 4.0, 16.0])
    attributes: list[str] = field(default_factory=lambda: list(kw.DEFAULT_RECOVER))
    recovery_keywords: list[str] = field(
        default_factory=lambda: [kw.IDENTITY, *kw.DEFAULT_RECOVER])
    threshold: float = 0.4
    detection_iou: float = 0.3
    seed: int | None = None
    judge: str = "facenet casia-webface"
    fid_features: str = "inception-v3-fid-2048"
    dataset: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.anonymize = kw.parse_list(self.anonymize)
        self.recover = kw.parse_list(self.recover)
        kw.validate_selection(self.anonymize, self.recover)
        self.attributes = [kw.get(a).name for a in kw.parse_list(self.attributes)]
        if kw.IDENTITY in self.attributes:
            raise ValueError("identity is judged by PSR, not by APR: leave it out of attributes")
        self.recovery_keywords = [kw.get(a).name for a in kw.parse_list(self.recovery_keywords)]
        self.epsilons = [check_epsilon(e) for e in self.epsilons]  # the one ε rule
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if not 0.0 < self.detection_iou <= 1.0:
            raise ValueError(f"detection_iou must be in (0, 1], got {self.detection_iou}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["epsilons"] = [_eps_text(e) for e in self.epsilons]
        if self.epsilon is not None:
            out["epsilon"] = _eps_text(self.epsilon)
        return out


def _eps_text(eps: float) -> float | str:
    return "inf" if math.isinf(eps) else eps


def run_key(method: str, epsilon: float | None) -> str:
    return method if epsilon is None else f"{method}@eps={_eps_text(epsilon)}"


class Evaluator:
    """Runs the methods on photos and judges the outputs.

    Args:
        pipeline: an ``LReOrgPipeline`` (its detector also judges detection).
        judge: the face recognizer for PSR, an ``IdentityEncoder`` (default in the CLI:
            facenet's CASIA-WebFace model, the one LReOrg is not trained against).
        clip: the CLIP zero-shot scorer for APR and recovery, a ``KeywordEncoder``.
        fid_features: crops → (N, D) features (``InceptionFeatures`` or
            ``ClipImageFeatures``).
        config: an ``EvalConfig``.
    """

    def __init__(self, pipeline, judge: IdentityEncoder, clip: KeywordEncoder,
                 fid_features: Callable[[Sequence[Image.Image]], torch.Tensor],
                 config: EvalConfig | None = None):
        self.pipeline = pipeline
        self.judge = judge
        self.clip = clip
        self.fid_features = fid_features
        self.config = config or EvalConfig()
        if getattr(fid_features, "name", None):  # the report names the network actually used
            self.config.fid_features = fid_features.name
        available = method_names(pipeline)
        wanted = self.config.methods
        if wanted is None:
            wanted = available
        unknown = [m for m in wanted if m not in available]
        if unknown:
            raise ValueError(f"method(s) {', '.join(unknown)} cannot run with what is loaded; "
                             f"available: {', '.join(available)}")
        self.methods = [ORIGINAL] + [m for m in wanted if m != ORIGINAL]
        sweep = epsilon_methods(self.methods)
        self.runs: list[tuple[str, str, float | None]] = [(m, m, None) for m in self.methods]
        self.runs += [(run_key(m, e), m, e) for m in sweep for e in self.config.epsilons]
        self.sweep_methods = sweep
        for _, method, epsilon in self.runs:  # bad options fail here, before any photo
            if method != ORIGINAL:
                pipeline.check(self._options(method, epsilon, None))

    # -- one photo ------------------------------------------------------------------------------
    def _seed(self, photo_id: str, key: str) -> int | None:
        if self.config.seed is None:
            return None
        digest = hashlib.sha256(f"{self.config.seed}:{photo_id}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def _options(self, method: str, epsilon: float | None, seed: int | None):
        """The evaluation's options, less those that do not apply to ``method`` (the
        pipeline refuses options that do not apply)."""
        options = ProtectOptions(
            anonymize=tuple(self.config.anonymize), recover=tuple(self.config.recover),
            epsilon=self.config.epsilon if epsilon is None else epsilon,
            mechanism=self.config.mechanism,
            rank_window=None if self.config.rank_window is None
            else tuple(self.config.rank_window), seed=seed)
        return options.for_method(method)

    def _labels(self, crops: Sequence[Image.Image]) -> dict[str, list[int]]:
        batch = torch.stack([pil_to_tensor(c) for c in crops])
        return {a: metrics.zero_shot_labels(self.clip.zero_shot(batch, a))
                for a in self.config.attributes}

    def _embed(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        return self.judge.embed(torch.stack([pil_to_tensor(c) for c in crops])).cpu()

    @torch.inference_mode()
    def evaluate_photo(self, photo_id: str, source) -> tuple[dict, dict[str, torch.Tensor]]:
        """(record, FID features) for one photo; record["status"] is "ok" or "no-face"."""
        pipe = self.pipeline
        photo = load_image(source, max_pixels=pipe.max_pixels)
        detector = pipe.detector
        found = detector.locate(photo)
        record = {"version": RECORD_VERSION, "photo": photo_id, "runs": {}}
        if not found:
            return {**record, "status": "no-face"}, {}
        size = detector.output_size
        crops = [align_face(photo, d.landmarks, size)[0] for d in found]
        boxes = [[float(v) for v in d.box] for d in found]
        record.update(status="ok", faces=[{"box": b} for b in boxes])
        in_embed = self._embed(crops)
        in_labels = self._labels(crops)
        record["input_labels"] = in_labels
        features = {"input": self.fid_features(crops)}
        for key, method, epsilon in self.runs:
            if method == ORIGINAL:
                output = photo
            else:
                seed = self._seed(photo_id, key)
                output = pipe(photo, self._options(method, epsilon, seed),
                              anonymized_crops=False).image
            # Judged in the input's aligned frame, cut from the composed photo (what a viewer
            # sees, paste-back included).
            out_crops = [align_face(output, d.landmarks, size)[0] for d in found]
            sims = metrics.identity_similarity(in_embed, self._embed(out_crops))
            out_labels = self._labels(out_crops)
            record["runs"][key] = {
                "method": method, "epsilon": None if epsilon is None else _eps_text(epsilon),
                "similarity": [float(s) for s in sims],
                "detected": [still_detected(detector, output, b, self.config.detection_iou)
                             for b in boxes],
                "labels": out_labels}
            features[key] = self.fid_features(out_crops)
        if "lreorg" in self.methods and pipe.model is not None:
            record["recovery"] = self._recovery(photo_id, crops, in_embed, in_labels)
        return record, features

    def _recovery(self, photo_id, crops, in_embed, in_labels) -> dict[str, list[bool]]:
        """Paper Table 8: anonymize one keyword, then recover it with the original key
        feature; does the result match the input again (label, or recognizer for identity)?"""
        pipe, model = self.pipeline, self.pipeline.model
        codes = pipe.encode(crops)
        out: dict[str, list[bool]] = {}
        for keyword in self.config.recovery_keywords:
            if keyword not in model.keywords:
                continue
            step = model.reorganize(codes, anonymize=[keyword], recover=[],
                                    epsilon=self.config.epsilon, mechanism=self.config.mechanism,
                                    rank_window=self.config.rank_window,
                                    seed=self._seed(photo_id, f"recovery:{keyword}"))
            _, restored = model.recover_step(step.anonymized[0], codes, keyword)
            images = [im.resize(crops[0].size, Image.LANCZOS) for im in pipe.generate(restored)]
            if keyword == kw.IDENTITY:
                sims = metrics.identity_similarity(in_embed, self._embed(images))
                out[keyword] = [bool(s >= self.config.threshold) for s in sims]
            else:
                labels = metrics.zero_shot_labels(
                    self.clip.zero_shot(torch.stack([pil_to_tensor(i) for i in images]), keyword))
                before = (in_labels[keyword] if keyword in in_labels else metrics.zero_shot_labels(
                    self.clip.zero_shot(torch.stack([pil_to_tensor(c) for c in crops]), keyword)))
                out[keyword] = [a == b for a, b in zip(before, labels)]
        return out

    # -- a folder -------------------------------------------------------------------------------
    def run(self, photos: str | Path, out: str | Path, progress: bool = True,
            restart: bool = False) -> dict:
        """Evaluate every photo under ``photos`` into ``out``; returns the results dict and
        writes results.json, results.md and privacy_utility.png there."""
        from tqdm.auto import tqdm

        from .report import write_report

        root = Path(photos)
        files = collect_photos(root)
        out = Path(out)
        records_dir = out / "records"
        records_dir.mkdir(parents=True, exist_ok=True)
        self._check_config(out, restart)
        failed = []
        bar = tqdm(files, desc="evaluating", unit="photo", disable=not progress)
        for path in bar:
            photo_id = path.relative_to(root).as_posix()
            stem = hashlib.sha1(photo_id.encode()).hexdigest()[:16]
            if (records_dir / f"{stem}.json").is_file():
                bar.set_postfix_str("skipped (done)")
                continue
            try:
                record, features = self.evaluate_photo(photo_id, path)
            except (ValueError, OSError) as e:  # unreadable or too large: report, go on
                failed.append({"photo": photo_id, "error": str(e)})
                continue
            if features:
                save_file({k: v.contiguous() for k, v in features.items()},
                          str(records_dir / f"{stem}.safetensors"))
            # The JSON last: its presence marks the photo as done.
            (records_dir / f"{stem}.json").write_text(json.dumps(record, indent=1))
            bar.set_postfix_str(f"{record['status']}")
        results = self.aggregate(records_dir, failed)
        write_report(results, out)
        return results

    def _check_config(self, out: Path, restart: bool) -> None:
        config = {"config": self.config.to_dict(), "runs": [k for k, _, _ in self.runs],
                  "version": RECORD_VERSION}
        path = out / "eval_config.json"
        if path.is_file() and not restart:
            old = json.loads(path.read_text())
            if old != config:
                raise ValueError(f"{out} holds an evaluation with a different configuration "
                                 f"({path}); resume with the same options, choose a new --out, "
                                 f"or pass --restart to discard the old records")
        if restart:
            for p in (out / "records").glob("*"):
                p.unlink()
        path.write_text(json.dumps(config, indent=2))

    def aggregate(self, records_dir: Path, failed: list[dict] | None = None) -> dict:
        """Combine every per-photo record into the results (the tables, plot and card read)."""
        records, feats = [], []
        for path in sorted(records_dir.glob("*.json")):
            rec = json.loads(path.read_text())
            records.append(rec)
            st = path.with_suffix(".safetensors")
            feats.append(load_file(str(st)) if st.is_file() else {})
        ok = [(r, f) for r, f in zip(records, feats) if r["status"] == "ok"]
        notes = []
        note = metrics.fid_sample_warning(sum(len(r["faces"]) for r, _ in ok))
        if note is not None:
            notes.append(note)
            warnings.warn(note, stacklevel=2)
        preserved = [a for a in self.config.attributes if a not in self.config.anonymize]
        real = torch.cat([f["input"] for _, f in ok]) if ok else torch.zeros(0, 1)
        table = {}
        for key, method, epsilon in self.runs:
            sims = [s for r, _ in ok for s in r["runs"][key]["similarity"]]
            detected = [d for r, _ in ok for d in r["runs"][key]["detected"]]
            # a run that anonymizes a keyword is not asked to preserve it
            keep = preserved if method != ORIGINAL else list(self.config.attributes)
            before = {a: [x for r, _ in ok for x in r["input_labels"][a]] for a in keep}
            after = {a: [x for r, _ in ok for x in r["runs"][key]["labels"][a]] for a in keep}
            apr, apr_kw = metrics.attribute_preservation_rate(before, after)
            fake = torch.cat([f[key] for _, f in ok]) if ok else torch.zeros(0, 1)
            table[key] = {
                "method": method, "label": method_label(method),
                "epsilon": None if epsilon is None else _eps_text(epsilon),
                "faces": len(sims),
                "psr": metrics.protection_success_rate(sims, self.config.threshold),
                "detection": metrics.detection_rate(detected),
                "apr": apr, "apr_per_keyword": apr_kw,
                "fid": metrics.frechet_distance(real, fake),
                "similarity": metrics.similarity_summary(sims)}
        recovery = {}
        for keyword in self.config.recovery_keywords:
            matches = [m for r, _ in ok for m in r.get("recovery", {}).get(keyword, [])]
            if matches:
                recovery[keyword] = metrics.recovery_rate(matches)
        return {
            "config": self.config.to_dict(),
            "photos": {"evaluated": len(ok),
                       "no_face": [r["photo"] for r in records if r["status"] == "no-face"],
                       "failed": failed or []},
            "faces": sum(len(r["faces"]) for r, _ in ok),
            "main": [k for k, _, e in self.runs if e is None],
            "sweep": {m: [k for k, mm, e in self.runs if mm == m and e is not None]
                      for m in self.sweep_methods},
            "methods": table,
            "recovery": recovery,
            "preserved_attributes": preserved,
            "warnings": notes,
        }
