"""Keyword-based swap training of CDFNet (SPEC §5), fitting the anonymizers on synthetic
faces, and the provenance a trained bundle records.

Layer 4. May import: ``lreorg_hub.pipeline`` (devices), ``lreorg_hub.bundle``,
``lreorg_hub.backbones``, ``lreorg_hub.scorers`` and ``lreorg_hub.method``; accelerate for
several processes. Not serving, dataset, evaluation or the CLI.
"""
