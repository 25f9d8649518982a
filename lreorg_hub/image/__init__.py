"""Pixels: loading and saving photos (no metadata out), face detection, FFHQ alignment and
paste-back on tensors, and the classical baselines (blur, pixelate, mask).

Layer 2. May import: ``lreorg_hub.method`` (rng only), torch, numpy, Pillow, facenet-pytorch
(MTCNN). Nothing of the latent method, the bundle or the pipeline.
"""
