"""What the page says, in a visitor's words: labels, the privacy statement, the record and the
budget, and one sentence per failure. Technical terms (draw, sequential composition, rank
window, W+ rows) appear only in the texts meant for the page's "technical details" fold."""

from __future__ import annotations

import math
import re
from typing import Sequence

from ..pipeline.options import STRENGTH_LIMITS
from ..privacy import USER_SEED_WARNING
from ..pipeline.registry import METHODS

__all__ = ["METHOD_LABELS", "PAGE_LABELS", "SHORT_NAMES", "PRIVACY_STATEMENT", "TECHNICAL_NOTE",
           "RequestError", "files_statement", "record_summary", "record_details",
           "budget_sentence", "compare_budget_sentence", "spent_sentence", "seed_sentence",
           "SEED_WARNING", "keyword_note", "strength_info", "page_sentence", "gpu_message",
           "user_message"]

#: The library's labels (technical, for the record and the console).
METHOD_LABELS = {name: info.label for name, info in METHODS.items()}

#: What the method menu shows a visitor.
PAGE_LABELS = {"lreorg": "LReOrg: new face, keeps your choice",
               "style-mix": "style-mix: new face, untrained",
               "laplace": "Laplace: noisy identity",
               "k-anonymity": "k-anonymity: averaged face",
               "blur": "Blur", "pixelate": "Pixelate", "mask": "Solid mask"}

#: Short names for captions and table rows (they fit under a thumbnail on a phone).
SHORT_NAMES = {"lreorg": "LReOrg", "style-mix": "style-mix", "laplace": "Laplace",
               "k-anonymity": "k-anonymity", "blur": "blur", "pixelate": "pixelate",
               "mask": "mask"}


PRIVACY_STATEMENT = (
    "**What the guarantee covers.** With LReOrg and style-mix, the face that replaces yours "
    "is picked at random among groups of *synthetic* faces (made up by the generator, never "
    "photos of people), in a way whose dependence on your face is bounded by the privacy "
    "budget: the smaller the budget, the less the new face depends on yours. Each extra "
    "version uses the budget once more, so 3 versions at budget 1 use 3 in total.\n\n"
    "**What it does not cover.** Everything outside the face (hair, clothes, background), the "
    "attributes you chose to keep, and what the model could not separate from them. Blur, "
    "pixelate, mask and k-anonymity give no formal guarantee. A seed you type lets anyone who "
    "has it replay how your face was replaced.")

#: The technical terms, for the "technical details" fold.
TECHNICAL_NOTE = (
    "LReOrg's conditional invertible network (CDFNet) splits the face's StyleGAN2 W+ code into "
    "a key feature and a residual per keyword; the identity key feature is replaced by a group "
    "drawn with an ε-differentially-private mechanism (GIA) — *window*: ε relative to the rank "
    "window around your own group (the paper's mode); *strict*: ε over all groups — and the "
    "other keywords by the farthest sub-category (KAA). style-mix replaces the middle W+ rows "
    "by a synthetic identity drawn the same way. k versions are k draws: by sequential "
    "composition they spend k·ε.")


def files_statement(rules) -> str:  # a files.FileRules (not imported: files imports us)
    """Exactly what the server keeps of a visitor's photo, clip or camera, where, and for how
    long."""
    return (
        "**What this server keeps of your photo, clip or camera, where, and for how long.**"
        "\n\n"
        "- **Your upload** travels to the server as a file in its temporary folder. The app "
        "reads it once, when you press Anonymize or Compare, and deletes that file and its "
        f"folder at once. An upload that is never used is deleted after "
        f"{_duration(rules.unused_upload_s)}.\n"
        "- **In memory only** (never on disk), the photo's bytes stay for "
        f"{_duration(rules.memory_s)} after your last run, so you can try other settings "
        "without uploading again; only your browser session can use them, and closing the "
        "tab drops them.\n"
        "- **Results** are PNG files in the temporary folder so that your browser can show "
        f"them; each is deleted {_duration(rules.result_s)} after it was made (download what "
        "you want to keep before then). They carry no metadata of your upload (no EXIF, GPS "
        "or colour profile).\n"
        "- **A clip** (Video tab) is kept the same way: the upload is read once and deleted "
        "with its folder, its bytes stay in memory only as above, and the anonymized clip is "
        f"an MP4 file deleted {_duration(rules.result_s)} after it was made (no location, "
        "device or other metadata of your clip).\n"
        "- **Your camera** (Webcam tab): each frame travels inside the page's messages and is "
        "anonymized in memory, never written to disk; each anonymized frame the page shows is "
        f"an image file in the temporary folder, deleted {_duration(rules.result_s)} after it "
        "was made.\n"
        "- **When the server stops** (also when the hosting platform stops it), every file "
        "above is deleted.\n"
        "- **Nothing else**: no log of your photo or results, no flagging, no copy elsewhere. "
        "While a file exists, its address is a long random name that only your browser is "
        "given.")


def _duration(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} minutes"
    return f"{seconds:g} seconds"


class RequestError(ValueError):
    """A visitor's input that cannot be served; the message is one sentence for the page."""


def _sentence(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "The request could not be served"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# -- the library's one-sentence errors, in the page's words -----------------------------------

def page_sentence(message: str, max_epsilon: float, max_samples: int) -> str:
    """The library's validation sentence (``ProtectOptions.validate``) as the page says it.
    Keyed by the option the sentence is about; the rule itself stays the library's."""
    text = message.strip()
    if text.startswith("epsilon must"):
        return (f"The privacy budget must be a number from 0 to {max_epsilon:g} (smaller is "
                f"more private).")
    if text.startswith("the Laplace mechanism needs epsilon > 0"):
        return "Laplace noise needs a privacy budget above 0."
    if text.startswith("samples must"):
        return (f"How many versions must be a whole number from 1 to {max_samples} (each "
                f"version uses the privacy budget once more).")
    strength = re.match(r"strength for (\w+) must be a number in \(0, ([\d.]+)\]", text)
    if strength:
        method, upper = strength.groups()
        return (f"The strength of {SHORT_NAMES.get(method, method)} must be more than 0 and "
                f"at most {float(upper):g}.")
    if text.startswith("recover does not apply to method"):
        method = text.split("'")[1] if "'" in text else ""
        return (f"{SHORT_NAMES.get(method, method)} cannot keep anything from your photo: "
                f"leave \"Keep from your photo\" empty.")
    anonymizes = re.match(r"method '([\w-]+)' anonymizes identity", text)
    if anonymizes:
        return (f"{SHORT_NAMES.get(anonymizes.group(1))} always replaces the identity: tick "
                f"\"identity\" under Anonymize.")
    if text.startswith("nothing to anonymize"):
        return "Tick at least one thing to anonymize (identity, for example)."
    if text.startswith("rank_window"):
        return "The rank window (under Advanced) needs 1 ≤ start ≤ end ≤ " + (
            text.rsplit("1..", 1)[1].split(" ")[0] if "1.." in text else "the number of "
            "groups") + "."
    return _sentence(text)


# -- ZeroGPU's errors (the `spaces` package raises gr.Error with these titles) ----------------

def gpu_message(title: str, message: str, what: str = "photo") -> str:
    """One sentence per ZeroGPU failure: what happened and when to retry (``what``: the
    visitor's "photo", "clip" or camera "frame")."""
    smaller = {"photo": "fewer versions", "clip": "a shorter clip"}.get(
        what, "a lower camera resolution")
    wait = re.search(r"[Tt]ry again in ([0-9:]+)", message or "")
    if title == "ZeroGPU quota exceeded":
        if "Space app has reached its GPU limit" in (message or ""):
            return ("This Space has used up its GPU time for now; please try again in a few "
                    "minutes.")
        when = f"in {wait.group(1)} (hours:minutes:seconds)" if wait else "later"
        return (f"Your free GPU time on Hugging Face is used up for now; please try again "
                f"{when}, or log in to Hugging Face for more GPU time.")
    if title == "ZeroGPU queue timeout":
        return ("No GPU became free in time (many visitors right now); please try again in a "
                "minute.")
    if title == "ZeroGPU illegal duration":
        return (f"This request needs more GPU time than one run may take; choose {smaller} "
                f"and try again.")
    if title == "ZeroGPU pending credits exceeded":
        return ("Too many of your GPU tasks are running at once; please try again when they "
                "have finished.")
    if title == "ZeroGPU worker error" and "aborted" in (message or "").lower():
        return (f"The GPU stopped this task before it finished (it ran out of time or the GPU "
                f"was reclaimed); please try again, with {smaller} if it happens again.")
    if title == "ZeroGPU client error":
        return "No GPU can be reached right now; please try again in a few minutes."
    return f"The GPU failed while processing this {what}; please try again in a minute."


def user_message(exc: Exception, what: str = "photo") -> str:
    """The one sentence a visitor sees for a failure (never a stack trace)."""
    if isinstance(exc, RequestError):
        return str(exc)
    return (f"Something went wrong while processing this {what}; please try another {what} "
            f"or other settings.")


# -- the record and the budget -----------------------------------------------------------------

def _number(x) -> str:
    if x == "inf" or (isinstance(x, float) and math.isinf(x)):
        return "∞"
    return f"{float(x):g}"


def record_summary(record: dict, measured: Sequence[tuple[str, float | None, int, int]] = (),
                   ) -> str:
    """The public record in plain words (Markdown), with what was measured on each image:
    (caption, similarity to the input or None, faces still found, faces)."""
    method = record.get("method", "?")
    lines = []
    if METHODS.get(method) is not None and METHODS[method].kind == "image":
        lines.append(f"**Done:** each face was covered ({SHORT_NAMES.get(method, method)}).")
    elif record.get("anonymize"):
        lines.append(f"**Replaced:** {', '.join(record['anonymize'])} "
                     f"({SHORT_NAMES.get(method, method)}).")
    if record.get("recover"):
        lines.append(f"**Kept from your photo:** {', '.join(record['recover'])}.")
    for rule, count in (record.get("faces_covered") or {}).items():
        lines.append(f"**Small faces:** {count} too small to replace, " + (
            "left as they are." if rule == "keep" else f"covered by {rule} instead."))
    lines.append(_budget_line(record))
    if seed_sentence(record):
        lines.append(seed_sentence(record))
    lines += [f"⚠️ {w}" for w in record.get("warnings", []) if w != USER_SEED_WARNING]
    lines.append("**Not covered:** everything outside the face, and what you chose to keep.")
    if measured:
        with_similarity = any(s is not None for _, s, _, _ in measured)
        head = "| image | " + ("similarity to your face | " if with_similarity else "") + \
            "still found as a face |"
        rows = [head, "|---|" + ("---|" if with_similarity else "") + "---|"]
        for caption, similarity, found, total in measured:
            cells = [caption] + ([("–" if similarity is None else f"{similarity:.2f}")]
                                 if with_similarity else []) + [f"{found} of {total}"]
            rows.append("| " + " | ".join(cells) + " |")
        lines.append("\n".join(rows) + ("\n\nSimilarity: 1 = recognisably you, about 0 = a "
                                        "different person." if with_similarity else ""))
    return "\n\n".join(lines)


def _budget_line(record: dict) -> str:
    total, eps, k = record.get("epsilon_total"), record.get("epsilon"), record.get("samples", 1)
    if total is None:
        return (f"**Privacy budget:** none used; {SHORT_NAMES.get(record.get('method'), '')} "
                f"gives no formal guarantee.")
    if k > 1:
        return (f"**Privacy budget:** {_number(eps)} per version × {k} versions = "
                f"{_number(total)} in total.")
    return f"**Privacy budget:** {_number(total)}."


def record_details(record: dict) -> str:
    """The record's technical side (Markdown), for the page's "technical details" fold."""
    method = record.get("method", "?")
    lines = [f"**Method:** {METHOD_LABELS.get(method, method)}."]
    identity = record.get("identity")
    if identity in ("gia", "style-mix"):
        window = record.get("rank_window")
        lines.append(f"**Mechanism:** {record['mechanism']}"
                     + (f", rank window {window[0]}–{window[1]}" if window else "") + ".")
    if record.get("composition"):
        lines.append(f"**Budget:** {record['composition']}")
    if record.get("guarantee"):
        lines.append(f"**Guarantee:** {record['guarantee']}")
    if record.get("scope"):
        lines.append(f"**Scope:** {record['scope']}")
    if record.get("seed_note"):
        lines.append(f"**Seed:** {record['seed_note']}")
    return "\n\n".join(lines)


def budget_sentence(spent: float | None, epsilon: float | None, versions: int) -> str:
    """What a choice will spend, before it runs (the page's live line)."""
    if spent is None:
        return "This choice uses no privacy budget (and gives no formal guarantee)."
    if versions > 1:
        return (f"{versions} versions at privacy budget {_number(epsilon)} each use a total "
                f"privacy budget of {_number(spent)}.")
    return f"One version uses a privacy budget of {_number(spent)}."


def _parts(spent: dict[str, float]) -> str:
    return " + ".join(f"{_number(v)} ({SHORT_NAMES.get(m, m)})" for m, v in spent.items())


def compare_budget_sentence(spent: dict[str, float]) -> str:
    """The total budget that comparing will spend on one photo: one result per method of the
    same photo, so their budgets add up."""
    if not spent:
        return "Comparing uses no privacy budget: none of these methods has a formal guarantee."
    return (f"Comparing uses a total privacy budget of **{_number(sum(spent.values()))}** on "
            f"your photo: one result per method, so their budgets add up ({_parts(spent)}); "
            f"the other methods use none.")


def spent_sentence(spent: dict[str, float]) -> str:
    """What a comparison spent, from its records."""
    if not spent:
        return "**Privacy budget spent on this photo:** none."
    return (f"**Privacy budget spent on this photo:** {_number(sum(spent.values()))} in total "
            f"({_parts(spent)}).")


#: The record's warning about a chosen seed (USER_SEED_WARNING), in the page's words.
SEED_WARNING = ("⚠️ Anyone who has this seed, the result and the public model can replay how "
                "your face was replaced and recognise you: keep the seed secret, or use "
                "\"random\" for photos you share.")


def seed_sentence(record: dict) -> str:
    """The seed in words (with the warning when the visitor typed one); "" when no random
    choice was made."""
    if record.get("seed_source") == "user":
        return f"**Seed:** {record.get('seed')} (typed by you).\n\n{SEED_WARNING}"
    if record.get("seed_source") == "os-entropy":
        return ("**Seed:** random; it is not shown or kept, so nobody can replay how your face "
                "was replaced.")
    return ""


def keyword_note(unavailable: dict[str, str], shown: Sequence[str]) -> str:
    """One sentence naming the keywords these weights cannot serve (those not shown)."""
    off = [n for n in unavailable if n not in shown]
    if not off:
        return ""
    return f"Not possible with the loaded model: {', '.join(off)}."


def strength_info(method: str) -> str:
    """The strength range, stated as the library checks it: more than 0, at most the max."""
    _, upper = STRENGTH_LIMITS[method]
    meaning = {"blur": "how blurred", "pixelate": "how coarse the blocks",
               "mask": "how opaque"}.get(method, "how strong")
    return f"{meaning.capitalize()}: more than 0, at most {upper:g}."

