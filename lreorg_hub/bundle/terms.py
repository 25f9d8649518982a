"""The terms of use of the backbone a bundle needs: what its weights were trained on and
under which licence (the card states them; using the bundle needs those weights)."""

from __future__ import annotations

__all__ = ["BACKBONE_TERMS", "backbone_terms"]

#: The terms of use of known backbone checkpoints, keyed by (repo_id, filename): what the
#: weights were trained on and under which licence, in the card's words. A backbone not
#: listed here gets a card that says its terms are unknown to this library.
BACKBONE_TERMS = {
    ("AIRI-Institute/HairFastGAN", "pretrained_models/encoder4editing/e4e_ffhq_encode.pt"): {
        "trained_on": "FFHQ (Flickr-Faces-HQ, 70,000 face photos from Flickr, NVIDIA); the "
                      "e4e encoder was trained on FFHQ images encoded into that generator",
        "licence": "the StyleGAN2 FFHQ generator weights are NVIDIA's, under the Nvidia Source "
                   "Code License-NC (non-commercial use only); the FFHQ dataset is CC BY-NC-SA "
                   "4.0 (each photo also under its own Flickr licence); the e4e code is MIT "
                   "(its StyleGAN2 parts carry NVIDIA's licence). This checkpoint is a "
                   "redistribution in the HairFastGAN repository: read that repository's "
                   "licence too. Using this bundle needs these weights, so their "
                   "non-commercial terms bind any use of it, whatever this bundle's own MIT "
                   "licence says.",
    },
}


def backbone_terms(backbone: dict) -> dict:
    """The known terms of a bundle's backbone, or a record saying they are unknown."""
    key = (backbone.get("repo_id"), backbone.get("filename"))
    return BACKBONE_TERMS.get(key, {
        "trained_on": "not known to lreorg-hub; see the backbone repository",
        "licence": f"not known to lreorg-hub: read the licence of {key[0]} before any use "
                   f"(using this bundle needs those weights)"})
