"""The dataset layouts: a folder of images, a Parquet file, a ``datasets`` dataset saved
with ``save_to_disk`` (and a folder of videos: ``videos.py``). Each lists its items in a
fixed order with a stable id, reads the items of one shard, and writes a shard's outputs in
the input's own layout and schema.

Items are read by position from a plain description (``SourceSpec``, picklable) so that any
process (this one, a Ray task) can read any shard without the driver shipping pixels.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..image.names import shown
from .cells import CellRoot, ItemError, check_cell_bytes, read_item_file
from .items import IMAGE_SUFFIXES, ShardInput
from .outdir import WORK, OutDir

__all__ = ["SourceSpec", "ShardInput", "open_source", "IMAGE_SUFFIXES", "RECORD_COLUMN"]

RECORD_COLUMN = "lreorg_record"   # added to table outputs: the item's record as JSON
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP",
                 ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class SourceSpec:
    """What to read: ``kind`` ("folder", "parquet", "hf", "videos"), ``path``, the image column and
    the optional id column of table formats; for table cells that hold a path, the folder
    they may lead into (``cell_root``, default the table's own folder) and the output folder
    they must never lead into (``out``)."""

    kind: str
    path: str
    image_column: str | None = None
    id_column: str | None = None
    cell_root: str | None = None
    out: str | None = None


def detect_kind(path: str | Path) -> str:
    path = Path(path)
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf"
        from .videos import holds_videos_only

        return "videos" if holds_videos_only(path) else "folder"
    if path.is_file() and path.suffix.lower() == ".parquet":
        return "parquet"
    if not path.exists():
        raise FileNotFoundError(f"dataset source not found: {shown(path)}")
    raise ValueError(f"{shown(path)} is neither a folder of images, a .parquet file, nor a "
                     f"dataset saved with datasets' save_to_disk")


def open_source(spec: SourceSpec):
    if spec.kind == "videos":
        from .videos import VideoFolderSource

        return VideoFolderSource(spec)
    return {"folder": FolderSource, "parquet": ParquetSource, "hf": HFSource}[spec.kind](spec)


# ---------------------------------------------------------------------------------------------
class FolderSource:
    """Image files under a folder (recursive); id = path relative to it (POSIX). Outputs
    mirror the tree: OUT/<id>, same name and format, without metadata."""

    def __init__(self, spec: SourceSpec):
        self.spec, self.root = spec, Path(spec.path)
        # Every image-named entry but folders is an item, so that a FIFO or a dangling link
        # is recorded as failed rather than silently missing (links to folders not followed).
        self._ids = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())

    def ids(self) -> list[str]:
        return self._ids

    def read(self, shard: int, start: int, stop: int) -> ShardInput:
        ids = self._ids[start:stop]
        images, errors = [], []
        for i in ids:
            try:
                if i.split("/", 1)[0] == WORK:  # its output would land in the bookkeeping
                    raise ItemError(f"it lies in a folder named {WORK}, the name the output "
                                    f"uses for its bookkeeping; rename that folder; not read")
                images.append(read_item_file(self.root / i, follow=True))  # file links: yes
                errors.append(None)
            except ItemError as e:
                images.append(None)
                errors.append(f"cannot read file: {e}")
        return ShardInput(shard, ids, images, errors,
                          origins=[{"input": str(self.root / i)} for i in ids])

    @staticmethod
    def write_shard(out: OutDir, shard: ShardInput, results: list, records: list[dict]
                    ) -> None:
        """Write each kept item's image at OUT/<id> (atomically, one file at a time)."""
        for item_id, res in zip(shard.ids, results):
            if res is None:
                continue
            buf = io.BytesIO()
            fmt = _SAVE_FORMATS.get(Path(item_id).suffix.lower(), "PNG")
            res.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            out.write(item_id, buf.getvalue())

    def finalize(self, out: OutDir, parts: list[str]) -> None:
        """Nothing to assemble: every image was written in place."""


# ---------------------------------------------------------------------------------------------
def _image_cell(value, cells: CellRoot) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, path, error) of one image cell: a struct {bytes, path} (the Hugging Face
    convention; a path without bytes is read under ``cells``' root) or plain binary."""
    path = value.get("path") if isinstance(value, dict) else None
    try:
        if value is None:
            raise ItemError("the image cell is empty")
        if isinstance(value, (bytes, bytearray)):
            return check_cell_bytes(bytes(value)), None, None
        if not isinstance(value, dict):
            raise ItemError(f"unsupported image cell type {type(value).__name__}")
        if value.get("bytes") is not None:
            return check_cell_bytes(bytes(value["bytes"])), path, None
        if not path:
            raise ItemError("the image cell has neither bytes nor a path")
        return cells.read(str(path)), path, None
    except ItemError as e:
        return None, path, str(e)


class _TableSource:
    """Shared by Parquet and saved ``datasets`` sources: rows of an Arrow table."""

    table_suffix = ".parquet"

    def _setup(self, schema, num_rows: int, id_values) -> None:
        import pyarrow as pa

        col = self.spec.image_column
        if col is None:
            col = self._guess_image_column(schema)
        elif col not in schema.names:
            raise ValueError(f"--image-column {col!r} is not a column of {self.spec.path} "
                             f"(columns: {', '.join(schema.names)})")
        t = schema.field(col).type
        if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)
                or (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0)):
            raise ValueError(f"column {col!r} holds {t}, not images (binary, or a struct with "
                             f"'bytes' and 'path' as the datasets Image feature stores)")
        if RECORD_COLUMN in schema.names:
            raise ValueError(f"{self.spec.path} already has a {RECORD_COLUMN!r} column: it "
                             f"looks like an lreorg output; anonymize the original")
        self.image_column, self.schema, self.num_rows = col, schema, num_rows
        if self.spec.id_column is None:
            self._ids = [f"row-{i}" for i in range(num_rows)]
        else:
            if self.spec.id_column not in schema.names:
                raise ValueError(f"--id-column {self.spec.id_column!r} is not a column of "
                                 f"{self.spec.path}")
            self._ids = [str(v) for v in id_values()]
            if len(set(self._ids)) != len(self._ids):
                raise ValueError(f"--id-column {self.spec.id_column!r} has duplicate values: "
                                 f"ids must be unique (they seed each item)")

    @staticmethod
    def _guess_image_column(schema) -> str:
        import pyarrow as pa

        meta = (schema.metadata or {}).get(b"huggingface")
        if meta:  # the datasets Image feature, when the file says so
            features = json.loads(meta).get("info", {}).get("features", {})
            hits = [n for n, f in features.items()
                    if isinstance(f, dict) and f.get("_type") == "Image"]
            if len(hits) == 1:
                return hits[0]
        hits = [f.name for f in schema if pa.types.is_binary(f.type)
                or pa.types.is_large_binary(f.type)
                or (pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0)]
        if len(hits) != 1:
            raise ValueError(f"cannot tell which column holds the images (candidates: "
                             f"{', '.join(hits) or 'none'}); pass --image-column")
        return hits[0]

    def ids(self) -> list[str]:
        return self._ids

    def _cells(self) -> CellRoot:
        root = self.spec.cell_root
        return CellRoot(root if root else Path(self.spec.path).parent if self.spec.kind ==
                        "parquet" else self.spec.path, explicit=bool(root), out=self.spec.out)

    def _shard_input(self, shard: int, start: int, table) -> ShardInput:
        images, errors, paths = [], [], []
        cells = self._cells()
        for value in table.column(self.image_column).to_pylist():
            data, path, error = _image_cell(value, cells)
            images.append(data)
            errors.append(error)
            paths.append(path)
        return ShardInput(shard, self._ids[start:start + table.num_rows], images, errors,
                          table=table, paths=paths,
                          origins=[{"input": self.spec.path, "row": start + k, "cell_path": p}
                                   for k, p in enumerate(paths)])

    def write_shard(self, out: OutDir, shard: ShardInput, results: list, records: list[dict]
                    ) -> None:
        """The shard's kept rows, image column replaced by the anonymized PNG (same type),
        plus the item's record as JSON, as one Parquet part (written atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        keep = [i for i, r in enumerate(results) if r is not None]
        table = shard.table.take(pa.array(keep, type=pa.int64()))
        col_type = self.schema.field(self.image_column).type
        cells = []
        for i in keep:
            buf = io.BytesIO()
            results[i].save(buf, format="PNG")
            data = buf.getvalue()
            if pa.types.is_struct(col_type):
                cell = {name: None for name in col_type.names}
                cell["bytes"] = data
                if "path" in cell:  # keep the name (not the file: it is the original photo)
                    p = shard.paths[i]
                    cell["path"] = Path(p).name if p else None
                cells.append(cell)
            else:
                cells.append(data)
        idx = self.schema.get_field_index(self.image_column)
        table = table.set_column(idx, self.schema.field(idx), pa.array(cells, type=col_type))
        table = table.append_column(RECORD_COLUMN, pa.array(
            [json.dumps(records[i], sort_keys=True) for i in keep], type=pa.string()))
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        out.write(self.part_path(shard.shard), buf.getvalue().to_pybytes())

    @staticmethod
    def part_path(shard: int) -> str:
        return f"{WORK}/parts/part-{shard:06d}.parquet"

    def _read_part(self, out: OutDir, part: str):
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = out.read(part)
        if data is None:
            raise FileNotFoundError(f"{out.path / part} is missing: run again to redo its "
                                    f"shard")
        return pq.read_table(pa.BufferReader(data)).cast(self.output_schema())

    def output_schema(self):
        import pyarrow as pa

        return self.schema.append(pa.field(RECORD_COLUMN, pa.string()))


class ParquetSource(_TableSource):
    """One Parquet file; id = ``--id-column`` or the row number. Output: OUT/<same name>."""

    def __init__(self, spec: SourceSpec):
        import pyarrow.parquet as pq

        self.spec = spec
        self.file = pq.ParquetFile(spec.path)
        md = self.file.metadata
        self._setup(self.file.schema_arrow, md.num_rows,
                    lambda: pq.read_table(spec.path, columns=[spec.id_column]).column(0)
                    .to_pylist())
        self._group_starts = []
        total = 0
        for g in range(md.num_row_groups):
            self._group_starts.append(total)
            total += md.row_group(g).num_rows

    def read(self, shard: int, start: int, stop: int) -> ShardInput:
        import pyarrow as pa

        # Only the row groups that overlap [start, stop), then the exact slice.
        groups = [g for g, s in enumerate(self._group_starts)
                  if s < stop and s + self.file.metadata.row_group(g).num_rows > start]
        table = self.file.read_row_groups(groups) if groups else self.schema.empty_table()
        first = self._group_starts[groups[0]] if groups else start
        table = table.slice(start - first, stop - start)
        return self._shard_input(shard, start, pa.Table.from_batches(table.to_batches(),
                                                                     schema=table.schema))

    def finalize(self, out: OutDir, parts: list[str]) -> None:
        import pyarrow.parquet as pq

        with out.writer(Path(self.spec.path).name) as f:
            with pq.ParquetWriter(f, self.output_schema()) as writer:
                for part in parts:  # one shard at a time: memory stays at one shard
                    writer.write_table(self._read_part(out, part))


class HFSource(_TableSource):
    """A ``datasets.Dataset`` saved with ``save_to_disk``; id = ``--id-column`` or the row
    number. Output: OUT loads with ``datasets.load_from_disk`` (same features + record)."""

    def __init__(self, spec: SourceSpec):
        import datasets

        self.spec = spec
        ds = datasets.load_from_disk(spec.path)
        if isinstance(ds, datasets.DatasetDict):
            raise ValueError(f"{spec.path} is a DatasetDict ({', '.join(ds)}): anonymize one "
                             f"split folder at a time, e.g. {spec.path}/{next(iter(ds))}")
        self.dataset = ds
        self.features = ds.features
        table = ds.data.table  # memory-mapped Arrow: no image is decoded
        if ds._indices is not None:
            raise ValueError(f"{spec.path} is a filtered / shuffled view; save it with "
                             f"flatten_indices() first")
        self._setup(table.schema, ds.num_rows,
                    lambda: table.column(spec.id_column).to_pylist())
        self._table = table

    def read(self, shard: int, start: int, stop: int) -> ShardInput:
        return self._shard_input(shard, start, self._table.slice(start, stop - start))

    def finalize(self, out: OutDir, parts: list[str]) -> None:
        import datasets
        import pyarrow as pa

        features = datasets.Features({**self.features, RECORD_COLUMN: datasets.Value("string")})
        tables = [self._read_part(out, p) for p in parts]
        table = (pa.concat_tables(tables) if tables
                 else self.output_schema().empty_table())
        ds = datasets.Dataset(table, info=datasets.DatasetInfo(features=features))
        tmp = f"{WORK}/final-{uuid.uuid4().hex[:8]}"
        ds.save_to_disk(str(out.folder_path(tmp)))
        out.move_files_up(tmp)  # then into OUT itself, file by file (renames)
