"""Whole datasets: a folder of images, a Parquet file or a saved ``datasets`` dataset in,
the same layout and schema out, with every face anonymized and a record per item.

The output folder's rules (``outdir``: nothing outside it written, no link in it followed,
one run at a time) and the private log (``privatelog``) serve ``lreorg anonymize`` too.

See ``docs/SCALE.md`` and ``lreorg anonymize-dataset --help``.

Layer 4. May import: ``lreorg_hub.pipeline`` and everything below it; pyarrow, datasets and
Ray (imported only when a Parquet / saved dataset or the Ray engine is used). Not serving,
training, evaluation or the CLI.
"""

from .cells import MAX_ITEM_BYTES, CellRoot, ItemError
from .keys import (KeyFileError, default_key_path, item_seed, key_fingerprint,
                   load_or_create_key)
from .options import ENGINES, NO_FACE_ACTIONS, DatasetOptions, DatasetRunError, PipelineSpec
from .outdir import OutDir, OutputFolderError, refuse_overlap
from .privatelog import PrivateLog
from .run import anonymize_dataset
from .shards import anonymize_shard
from .sources import RECORD_COLUMN, SourceSpec, open_source

__all__ = ["anonymize_dataset", "anonymize_shard", "DatasetOptions", "PipelineSpec",
           "DatasetRunError", "KeyFileError", "default_key_path", "load_or_create_key",
           "item_seed", "key_fingerprint", "ENGINES", "NO_FACE_ACTIONS", "RECORD_COLUMN",
           "SourceSpec", "open_source", "OutDir", "OutputFolderError", "refuse_overlap",
           "PrivateLog", "MAX_ITEM_BYTES", "CellRoot", "ItemError"]
