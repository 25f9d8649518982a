"""The paper in latent space: keywords, CDFNet, the anonymizers and their DP mechanism,
style-mix, fitting on latents, and the one randomness policy.

Layer 1 (the bottom, beside ``lreorg_hub.privacy``). May import: torch, ``lreorg_hub.privacy``.
Never reads or writes a file, never sees pixels, never imports a higher layer
(bundle, backbones, scorers, image, pipeline, serving, cli, training, evaluation, dataset).

Nothing is imported here eagerly, so ``lreorg_hub.method.keywords`` stays torch-free.
"""
