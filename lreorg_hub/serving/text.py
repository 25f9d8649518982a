"""What the page says: labels, the privacy statement, the record and the budget in words, and
one sentence per failure."""

from __future__ import annotations

from typing import Sequence

from ..method import keywords as kw
from ..pipeline.registry import METHODS

__all__ = ["METHOD_LABELS", "PRIVACY_STATEMENT", "RequestError", "describe_record",
           "budget_text", "user_message"]

#: Short honest labels, from the methods registry.
METHOD_LABELS = {name: info.label for name, info in METHODS.items()}


PRIVACY_STATEMENT = (
    "**What the guarantee covers.** With LReOrg (window or strict) and style-mix, the face "
    "that replaces yours is drawn by an ε-differentially-private mechanism over groups of "
    "*synthetic* identities (mapping-network samples, never photos of people): smaller ε "
    "makes the draw less dependent on your face. The *window* mode bounds it relative to the "
    "rank window around your own group; *strict* bounds it over all groups. k diverse samples "
    "spend k·ε in total.\n\n"
    "**What it does not cover.** Pixels outside the face, the attributes you chose to recover, "
    "and the residual code still carry information about you; the classical baselines (blur, "
    "pixelate, mask) and k-anonymity carry no formal guarantee. A seed you type lets anyone "
    "who has it replay the same draw.\n\n"
    "**Your photo.** It is processed in memory; uploads and results are deleted from the "
    "server's temporary folder within minutes, nothing is logged, and every image you get "
    "back is a fresh PNG without any metadata (EXIF, GPS, ICC) of your upload.")


class RequestError(ValueError):
    """A visitor's input that cannot be served; the message is one sentence for the page."""


def _sentence(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "The request could not be served"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe_record(record: dict) -> str:
    """The public record in plain words (Markdown)."""
    method = record.get("method", "?")
    lines = [f"**Method:** {METHOD_LABELS.get(method, method)}."]
    if record.get("anonymize"):
        lines.append(f"**Anonymized:** {', '.join(record['anonymize'])}.")
    if record.get("recover"):
        lines.append(f"**Recovered (kept from your photo):** {', '.join(record['recover'])}.")
    identity = record.get("identity")
    if identity in ("gia", "style-mix"):
        window = record.get("rank_window")
        lines.append(f"**Mechanism:** {record['mechanism']}"
                     + (f", rank window {window[0]}–{window[1]}" if window else "") + ".")
    elif identity in ("laplace", "k-anonymity"):
        lines.append(f"**Identity replaced by:** the {identity} baseline.")
    for rule, count in (record.get("faces_covered") or {}).items():
        lines.append(f"**Small faces:** {count} found too small to regenerate, "
                     + ("left as they are." if rule == "keep" else f"covered by {rule}."))
    if record.get("epsilon") is not None:
        lines.append(f"**Privacy budget:** {record.get('composition') or ''} (ε = "
                     f"{record['epsilon']} per draw, total {record.get('epsilon_total')}.)")
    if record.get("seed_source") == "user":
        lines.append(f"**Seed:** {record.get('seed')} (typed by you).")
    elif record.get("seed_source") == "os-entropy":
        lines.append("**Seed:** random, from the operating system's entropy; it is not shown "
                     "or kept, so nobody can replay this draw.")
    for warning in record.get("warnings", []):
        lines.append(f"⚠️ {warning}")
    if record.get("guarantee"):
        lines.append(f"**Guarantee:** {record['guarantee']}")
    if record.get("scope"):
        lines.append(f"**Not covered:** {record['scope']}")
    return "\n\n".join(lines)


def budget_text(method: str, anonymize: Sequence[str] | None, epsilon, samples) -> str:
    """The total budget that k diverse samples spend, for the page."""
    try:
        eps, k = float(epsilon), int(samples)
    except (TypeError, ValueError):
        return ""
    info = METHODS.get(method)
    if info is None or not info.uses_epsilon or kw.IDENTITY not in kw.parse_list(anonymize):
        return "This choice spends no privacy budget (no ε-DP draw: no formal guarantee)."
    return (f"Releasing k = {k} diverse sample(s) at ε = {eps:g} each spends a total budget "
            f"of k·ε = {k * eps:g} (sequential composition).")


def user_message(exc: Exception) -> str:
    """The one sentence a visitor sees for a failure (never a stack trace)."""
    if isinstance(exc, RequestError):
        return str(exc)
    return ("Something went wrong while processing this photo; please try another photo or "
            "other settings.")
