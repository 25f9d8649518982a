"""The public record of one anonymized video: the method's ``PrivacyRecord`` (built by the one
``to_dict``), completed with what a clip adds (SPEC §9): tracks, frames per track, draws and ε
per track and in total, what a split track costs, and the frames covered by the fallback.

Nothing in the record can single out the input: no boxes, no scores, no timestamps beyond
frame numbers, no seed unless the user typed it. What it leaves out (each track's first box,
the detector's scores) is :func:`track_diagnostics`, for the private log only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from ..privacy import PrivacyRecord
from .frames import (COVERED_MISSED, COVERED_SMALL, COVERED_UNDRAWN, OBFUSCATED, REGENERATED)
from .tracking import DETECTED

__all__ = ["TrackStats", "video_record", "track_diagnostics", "PER_FRAME_WARNING",
           "SPLIT_TRACK_NOTE"]

PER_FRAME_WARNING = ("Per-frame draws (--draw per-frame) are an ablation: every frame of a face "
                     "is a fresh identity draw, so the identity flickers and a face shown in n "
                     "frames spends n·ε. Use the default one draw per track for anything you "
                     "publish.")

SPLIT_TRACK_NOTE = ("A person the tracker loses and finds again (out of the frame, hidden for "
                    "longer than the tracker waits) becomes a new track with a new draw: one "
                    "person in two tracks spends 2ε. The worst case for one person is therefore "
                    "(the number of that person's tracks) × ε, at most the total over all "
                    "tracks. The tool cannot tell which tracks are the same person without "
                    "comparing real faces, which it does not do.")


@dataclass
class TrackStats:
    """One track over the clip: its frames and what happened to its face in each."""

    track: int
    first_frame: int
    last_frame: int = -1
    fates: Counter = field(default_factory=Counter)
    draws: int = 0

    def add(self, frame: int, fate: str) -> None:
        self.last_frame = frame
        self.fates[fate] += 1

    @property
    def frames(self) -> int:
        return sum(self.fates.values())

    @property
    def covered(self) -> int:
        return sum(self.fates[k] for k in (COVERED_MISSED, COVERED_SMALL, COVERED_UNDRAWN))


def _eps(x):
    return "inf" if x is not None and math.isinf(x) else x


def video_record(base: PrivacyRecord, tracks: list[TrackStats], *, frames: int, draw: str,
                 draws_identity: bool, seed, seed_source: str, detect_every: int,
                 covered_rule: str, audio_note: str | None = None) -> PrivacyRecord:
    """The video's record from the method's record of one frame batch (``base``)."""
    eps = base.epsilon if draws_identity else None
    total = sum(t.draws for t in tracks)
    covered = sum(t.covered for t in tracks)
    per_track = [{"track": t.track, "first_frame": t.first_frame, "last_frame": t.last_frame,
                  "frames": t.frames, "regenerated": t.fates[REGENERATED],
                  "obfuscated": t.fates[OBFUSCATED],
                  "covered": {"missed": t.fates[COVERED_MISSED],
                              "small": t.fates[COVERED_SMALL],
                              "no_draw": t.fates[COVERED_UNDRAWN]},
                  "draws": t.draws,
                  "epsilon": None if eps is None else _eps(t.draws * eps)} for t in tracks]
    summary = {"frames": frames, "tracks": len(tracks), "draw": draw if draws_identity else
               "none", "detect_every": detect_every, "per_track": per_track, "draws": total,
               "epsilon_per_draw": _eps(eps),
               "epsilon_all_draws": None if eps is None else _eps(total * eps),
               "worst_case_per_person": None if eps is None else _eps(total * eps),
               "face_frames_covered": covered, "covered_by": covered_rule,
               "split_tracks": SPLIT_TRACK_NOTE if draws_identity else None,
               "audio": audio_note}
    most = max((t.draws for t in tracks), default=1)
    warnings = list(base.warnings)
    if draws_identity and draw == "per-frame":
        warnings.append(PER_FRAME_WARNING)
    regenerated = sum(1 for t in tracks if t.fates[REGENERATED] or t.fates[OBFUSCATED])
    record = replace(
        base, seed=seed, seed_source=seed_source, seed_note="", warnings=warnings,
        samples=max(most, 1) if draws_identity and draw == "per-frame" else 1,
        faces=regenerated, faces_found=len(tracks),
        faces_covered={covered_rule: len(tracks) - regenerated} if len(tracks) > regenerated
        else {}, composition="", epsilon_total=None,
        extra={**base.extra, "video": summary})
    # The clip's total is every draw's ε: the tool cannot tell which tracks are one person,
    # so the worst case (all tracks one person) is the one it can state.
    if eps is not None:
        record.epsilon_total = total * eps if total else 0.0
    record.composition = _composition(record, tracks, summary, covered)
    return record


def _composition(record: PrivacyRecord, tracks, summary: dict, covered: int) -> str:
    n, frames, total = len(tracks), summary["frames"], summary["draws"]
    head = f"Video: {frames} frames, {n} track(s) (a track is one face followed over frames)."
    parts = [head]
    eps = record.epsilon if summary["epsilon_per_draw"] is not None else None
    if eps is None:
        parts.append("No ε-DP draw ran on this clip." if summary["draw"] == "none" else "")
    elif math.isinf(eps):
        parts.append(f"{total} draw(s) with ε = ∞: no DP budget applies.")
    elif summary["draw"] == "per-track":
        parts.append(f"One identity draw per track, used in every frame of it: each track "
                     f"spends ε = {eps:g}; {total} draw(s) spend {total * eps:g} over all "
                     f"tracks.")
    else:
        parts.append(f"A fresh draw in every frame (ablation): {total} draw(s), "
                     f"{total * eps:g} over all tracks; the longest track alone spends "
                     f"{record.samples}·ε = {record.samples * eps:g}.")
    if eps is not None and summary["split_tracks"]:
        parts.append("A person lost and found again is a new track and a new draw (2ε for "
                     "two tracks); the tool cannot tell which tracks are one person.")
    if covered:
        parts.append(f"{covered} face-frame(s) without a usable face (missed by the detector, "
                     f"too small, or not drawn) were covered by {summary['covered_by']}.")
    return " ".join(p for p in parts if p)


def track_diagnostics(plan: list) -> dict:
    """Private: per track (from each frame's tracked faces), its first and last frame, its box
    where it was first seen, how often the detector saw it and with which scores."""
    tracks: dict[int, dict] = {}
    for index, faces in enumerate(plan):
        for face in faces:
            t = tracks.setdefault(face.track, {
                "track": face.track, "first_frame": index,
                "first_box": [round(float(v), 1) for v in face.box], "detected": 0,
                "scores": []})
            t["last_frame"] = index
            if face.state == DETECTED:
                t["detected"] += 1
                t["scores"].append(float(face.score or 0.0))
    for t in tracks.values():
        scores = t.pop("scores")
        t["min_score"] = round(min(scores), 4) if scores else None
        t["mean_score"] = round(sum(scores) / len(scores), 4) if scores else None
    return {"tracks": [tracks[k] for k in sorted(tracks)]}
