"""Which scorer weights are used by default: plain values, no torch, so the CLI's help and
the training configuration read them without loading a network."""

__all__ = ["DEFAULT_CLIP_MODEL", "DEFAULT_CLIP_PRETRAINED", "DEFAULT_APR_CLIP",
           "FACENET_WEIGHTS", "FFHQ_FACE_CROP"]

#: open_clip has no "default" tag; this is the LAION-2B ViT-B-32 checkpoint its README leads with.
DEFAULT_CLIP_MODEL = "ViT-B-32"

DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"

#: The CLIP that judges APR in ``lreorg eval`` by default: another architecture and training
#: set than the one above (which conditions CDFNet and trains L_s), so the method is not
#: graded by its own critic.
DEFAULT_APR_CLIP = {"model_name": "ViT-B-16", "pretrained": "openai"}

#: facenet-pytorch's published weights (the same URLs its own loader uses).
FACENET_WEIGHTS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}

#: The inner face box (left, top, right, bottom, fractions of the side) of an FFHQ-aligned crop,
#: the region pSp's identity loss crops (pixels 32:220 × 35:223 of 256) before a face recognizer.
FFHQ_FACE_CROP = (32 / 256, 35 / 256, 220 / 256, 223 / 256)
