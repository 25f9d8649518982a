"""What the Gradio app runs, without Gradio: pick the weights once, serve a request, measure it.

``app.py`` only lays out the page and calls these functions, which call ``LReOrgPipeline``
(the API the CLI and the tests use too). Nothing here writes an image to disk or logs image
data; every image returned is a fresh PIL image (no metadata of the upload).

Weights are decided once per process by :func:`load_runtime`:

- ``lreorg``: a bundle and a backbone loaded (``--demo`` builds small random ones);
- ``style-mix``: only the backbone loaded (training-free baseline, from the methods module);
- ``baselines``: nothing could be loaded: blur / pixelate / mask (MTCNN ships with
  facenet-pytorch), with notes that say which weights are missing and how to provide them
  (for the operator's console; the page says in one sentence what runs).

What is kept of a visitor's photo, where and for how long is decided in ``files``. The Video
and Webcam tabs run ``video`` and ``webcam`` (imported by name: ``lreorg_hub.serving.video``).

Layer 4. May import: ``lreorg_hub.pipeline`` and everything below it, ``lreorg_hub.demo``,
``lreorg_hub.scorers``. Never Gradio (only ``app.py`` imports it), never the CLI.
"""

from .files import (CLIP_GONE, PHOTO_GONE, FileRules, RecentPhotos, VisitorFiles, delete_older_than,
                    read_and_delete)
from .form import MethodForm, method_form
from .measure import Output, measure
from .protect import (COMPARISON_COLUMNS, Comparison, ProtectResult, compare, compare_photo,
                      compare_summary, comparison_budget, comparison_table,
                      comparison_options, comparison_requests, gpu_seconds, protect,
                      protect_photo)
from .requests import (budget, check_options, options_from_form, parse_seed, read_photo,
                       spent_budget)
from .runtime import Runtime, ServingConfig, load_runtime
from .text import (METHOD_LABELS, PAGE_LABELS, PRIVACY_STATEMENT, SHORT_NAMES, TECHNICAL_NOTE,
                   RequestError, budget_sentence, compare_budget_sentence, files_statement,
                   gpu_message, page_sentence, record_details, record_summary, user_message)

__all__ = ["ServingConfig", "Runtime", "load_runtime", "RequestError", "options_from_form",
           "check_options", "spent_budget", "budget", "Output", "measure", "ProtectResult",
           "protect", "protect_photo", "compare", "compare_photo", "compare_summary", "Comparison",
           "COMPARISON_COLUMNS", "comparison_table",
           "comparison_options", "comparison_requests", "comparison_budget", "gpu_seconds",
           "MethodForm", "method_form", "FileRules", "RecentPhotos", "VisitorFiles", "PHOTO_GONE",
           "CLIP_GONE",
           "read_and_delete",
           "delete_older_than", "record_summary", "record_details", "budget_sentence",
           "compare_budget_sentence", "files_statement", "gpu_message", "page_sentence",
           "parse_seed", "read_photo", "user_message", "METHOD_LABELS", "PAGE_LABELS",
           "SHORT_NAMES", "PRIVACY_STATEMENT", "TECHNICAL_NOTE"]
