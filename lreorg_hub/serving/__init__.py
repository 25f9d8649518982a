"""What the Gradio app runs, without Gradio: pick the weights once, serve a request, measure it.

``app.py`` only lays out the page and calls these functions, which call ``LReOrgPipeline``
(the API the CLI and the tests use too). Nothing here writes an image to disk or logs image
data; every image returned is a fresh PIL image (no metadata of the upload).

Weights are decided once per process by :func:`load_runtime`:

- ``lreorg``: a bundle and a backbone loaded (``--demo`` builds small random ones);
- ``style-mix``: only the backbone loaded (training-free baseline, from the methods module);
- ``baselines``: nothing could be loaded: blur / pixelate / mask (MTCNN ships with
  facenet-pytorch), with notes that say which weights are missing and how to provide them.

Layer 4. May import: ``lreorg_hub.pipeline`` and everything below it, ``lreorg_hub.demo``,
``lreorg_hub.scorers``. Never Gradio (only ``app.py`` imports it), never the CLI.
"""

from .measure import Output, measure
from .protect import (Comparison, ProtectResult, compare, comparison_options, protect,
                      protect_photo)
from .requests import check_options, options_from_form, parse_seed, read_photo
from .runtime import Runtime, ServingConfig, load_runtime
from .text import (METHOD_LABELS, PRIVACY_STATEMENT, RequestError, budget_text, describe_record,
                   user_message)

__all__ = ["ServingConfig", "Runtime", "load_runtime", "RequestError", "options_from_form",
           "check_options", "Output", "measure", "ProtectResult", "protect", "protect_photo",
           "compare", "Comparison", "comparison_options", "describe_record", "budget_text",
           "parse_seed", "read_photo", "user_message", "METHOD_LABELS", "PRIVACY_STATEMENT"]
