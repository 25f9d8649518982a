"""Every way of protecting a face: the methods' names, what each needs loaded, and which
options apply (plain data: the CLI reads it without torch)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METHODS", "MethodInfo", "MAX_SAMPLES", "MAX_FACES"]

MAX_SAMPLES = 16          # diverse samples per face: k·ε spent, k generator passes per face
MAX_FACES = 256           # face indices one call may select


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, what it needs loaded, and which options apply to it."""

    name: str
    label: str                 # short honest text for menus, captions and records
    kind: str                  # "latent" (works on W+ codes) or "image" (works on pixels)
    needs: str                 # "bundle" (+ backbone), "backbone" (+ fitted style-mix), "nothing"
    uses_epsilon: bool
    options: tuple[str, ...]   # ProtectOptions fields that apply
    description: str = ""


_GIA = ("anonymize", "recover", "epsilon", "rank_window", "mechanism", "seed", "samples")


METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("lreorg", "LReOrg (CDFNet + GIA / KAA)", "latent", "bundle", True, _GIA,
               "Reorganize the W+ code: replace the keywords' key features (identity by the "
               "ε-DP group sampler GIA), then recover the chosen attributes."),
    MethodInfo("style-mix", "style-mix (training-free baseline)", "latent", "backbone", True,
               ("anonymize", "epsilon", "rank_window", "mechanism", "seed", "samples",
                "style_rows"),
               "Replace the middle W+ rows by a synthetic identity drawn with GIA's mechanism "
               "from k-means groups of mapping-network samples. No CDFNet, no recovery."),
    MethodInfo("laplace", "Laplace noise (latent baseline)", "latent", "bundle", True,
               ("anonymize", "recover", "epsilon", "seed", "samples"),
               "IdentityDP-style Laplace noise on the clipped identity key feature."),
    MethodInfo("k-anonymity", "k-anonymity (latent baseline)", "latent", "bundle", False,
               ("anonymize", "recover"),
               "Replace the identity key feature by the farthest group centre (deterministic)."),
    MethodInfo("blur", "Gaussian blur (image baseline)", "image", "nothing", False,
               ("strength",), "Blur the face region; strength = σ / face size."),
    MethodInfo("pixelate", "pixelation (image baseline)", "image", "nothing", False,
               ("strength",), "Mosaic the face region; strength = block side / face size."),
    MethodInfo("mask", "solid mask (image baseline)", "image", "nothing", False,
               ("strength",), "Cover the face region; strength = opacity."),
)}
