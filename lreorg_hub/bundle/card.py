"""The bundle's model card: the evaluation table from ``lreorg eval``'s results.json and the
training metadata, with the metadata a Hub user filters by."""

from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from .lreorg import LReOrg
from .terms import BACKBONE_TERMS, backbone_terms
from .vetting import unfitted_anonymizers

__all__ = ["read_training_metadata", "read_eval_results", "evaluation_context", "render_card",
           "main_table", "eval_results", "BACKBONE_TERMS", "backbone_terms"]


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _num(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def main_table(results: dict, judge: str | None = None) -> str:
    """The Tables 2–5 layout: Method | PSR (%) ↑ | Detection (%) ↑ | APR (%) ↑ | FID ↓."""
    judge = judge or results["config"]["judge"]
    lines = [f"| Method | PSR (%) ↑ ({judge}) | Detection (%) ↑ | APR (%) ↑ | FID ↓ |",
             "|---|---|---|---|---|"]
    for key in results["main"]:
        row = results["methods"][key]
        lines.append(f"| {row['label']} | {_pct(row['psr'])} | {_pct(row['detection'])} | "
                     f"{_pct(row['apr'])} | {_num(row['fid'])} |")
    return "\n".join(lines)


def read_training_metadata(bundle_dir: str | Path) -> dict | None:
    """``training.json`` beside the bundle's weights, or None when the bundle has none."""
    path = Path(bundle_dir) / "training.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    err = data.get("roundtrip_error")
    if err is not None and (isinstance(err, bool) or not isinstance(err, (int, float))
                            or not math.isfinite(err) or err < 0):
        raise ValueError(f"{path}: roundtrip_error must be a non-negative number, got {err!r}")
    return data


def read_eval_results(path: str | Path) -> dict:
    """An ``lreorg eval`` results.json (checked for the fields the card needs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation results {path} not found (lreorg eval writes "
                                f"OUT/results.json)")
    try:
        results = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    missing = [k for k in ("config", "photos", "faces", "main", "methods") if k not in results]
    if missing:
        raise ValueError(f"{path} is not an lreorg eval results.json (missing "
                         f"{', '.join(missing)})")
    return results


def evaluation_context(results: dict, source: str = "lreorg eval") -> dict:
    """The template's ``evaluation`` variable: the main table and the recovery table."""
    cfg = results["config"]
    recovery = results.get("recovery") or {}
    recovery_table = None
    if recovery:
        names = list(recovery)
        recovery_table = "\n".join([
            "| Attribute | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
            "| Rec rate (%) | " + " | ".join(
                "–" if recovery[n] is None else f"{100 * recovery[n]:.1f}" for n in names)
            + " |"])
    return {"photos": results["photos"]["evaluated"], "faces": results["faces"],
            "warnings": results.get("warnings") or [],
            "dataset": (cfg.get("dataset") or {}).get("name"),
            "source": source, "judge": cfg["judge"], "threshold": cfg["threshold"],
            "fid_features": cfg["fid_features"],
            "attributes": ", ".join(results.get("preserved_attributes", [])) or "no keyword",
            "table": main_table(results), "recovery_table": recovery_table}


#: results.json fields → (model-index metric type, name, scale to percent)
_METRICS = (("psr", "psr", "PSR (%)", 100.0), ("detection", "detection_rate", "Detection (%)",
                                                  100.0),
            ("apr", "apr", "APR (%)", 100.0), ("fid", "fid", "FID", 1.0))


def eval_results(results: dict) -> list[EvalResult]:
    """The model-index entries (huggingface_hub ``EvalResult``) of the LReOrg rows of an
    ``lreorg eval`` results.json: PSR under the judge, detection, APR and FID."""
    cfg = results["config"]
    dataset = cfg.get("dataset") or {}
    out = []
    for key in results["main"]:
        row = results["methods"][key]
        if row["method"] != "lreorg":
            continue
        for field_name, metric_type, label, scale in _METRICS:
            value = row.get(field_name)
            if value is None:
                continue
            name = f"{label} ({cfg['judge']})" if field_name == "psr" else label
            out.append(EvalResult(
                task_type="image-to-image", task_name="Face anonymization",
                dataset_type=dataset.get("type") or "custom",
                dataset_name=dataset.get("name") or "face photos",
                dataset_split=dataset.get("split"),
                metric_type=metric_type, metric_name=name,
                metric_value=round(scale * float(value), 4 if scale == 1.0 else 2)))
    return out


def render_card(model: LReOrg, repo_id: str | None = None, evaluation: dict | None = None,
                training: dict | None = None) -> ModelCard:
    """The model card: the bundle's template plus metadata a Hub user filters by.

    ``base_model`` is the backbone repo (pinned in ``base_model_revision``): the bundle works
    only in that generator's W+ space and needs its weights at every use; it is not a
    fine-tune of it (``base_model_relation: adapter``, the Hub's word for an add-on that
    runs with its base model). ``model-index`` comes from the evaluation's LReOrg rows.
    """
    card = model.generate_model_card(
        repo_id=repo_id, training=training, unfitted=unfitted_anonymizers(model),
        terms=backbone_terms(model.backbone), provenance=model.provenance or {},
        evaluation=None if evaluation is None else evaluation_context(evaluation))
    data = card.data
    data.base_model = model.backbone["repo_id"]
    data.base_model_revision = model.backbone["revision"]
    data.base_model_relation = "adapter"
    data.model_name = repo_id.split("/")[-1] if repo_id else "lreorg"
    if evaluation is not None:
        data.eval_results = eval_results(evaluation) or None
    return ModelCard(str(card))  # re-parse: what is saved is what the Hub will read
