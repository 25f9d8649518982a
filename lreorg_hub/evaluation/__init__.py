"""Evaluation of LReOrg and its baselines on face photos (SPEC §6, paper §4).

``metrics`` holds the metric definitions as pure functions; ``runner`` runs every method on a
folder and judges the outputs (resumable per photo); ``report`` writes the tables, JSON and
the privacy–utility plot; ``features`` the FID feature networks.

Layer 4. May import: ``lreorg_hub.pipeline``, ``lreorg_hub.scorers`` and everything below
them; torchmetrics and matplotlib. Not serving, dataset, training or the CLI.
"""

from .features import ClipImageFeatures, InceptionFeatures
from .metrics import (attribute_preservation_rate, detection_rate, frechet_distance,
                      protection_success_rate, recovery_rate)
from .report import markdown_tables, plot_privacy_utility, write_report
from .runner import ORIGINAL, EvalConfig, Evaluator, collect_photos

__all__ = ["EvalConfig", "Evaluator", "ORIGINAL", "collect_photos", "InceptionFeatures",
           "ClipImageFeatures", "protection_success_rate", "detection_rate",
           "attribute_preservation_rate", "recovery_rate", "frechet_distance",
           "markdown_tables", "plot_privacy_utility", "write_report"]
