"""The file store: uploaded bytes under DATA_DIR/files/<dataset_id>/<document_id>, whatever
database backend records them. User-supplied names never become paths.

An upload is staged first (``stage``: a flocked file under ``files/.staging``), then ``put``
into place by the database transaction that records it; ``sweep_staging`` removes what no live
writer holds. File-system errors while storing are the storage's (Unavailable("storage")), never
the request's; errors reading the client's stream pass through."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from api.storage import fs
from api.storage.errors import Unavailable

COPY_BLOCK = 1024 * 1024


class LocalFileStore:
    """The FileStore seam on the local file system."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "files"

    def file_path(self, document: Mapping[str, Any]) -> Path:
        return self.files_dir / str(document["dataset_id"]) / str(document["id"])

    def check_files(self) -> None:
        fs.probe_write(fs.staging_dir(self.files_dir))

    def free_bytes(self) -> int:
        return fs.free_bytes(self.data_dir)

    def sweep_staging(self) -> int:
        return fs.sweep(self.files_dir)

    # -- storing uploads ----------------------------------------------------------------
    @contextmanager
    def storing(self) -> Iterator[None]:
        """A file-system error while storing an upload is the storage's, not the request's."""
        try:
            yield
        except OSError as exc:
            raise Unavailable(
                "storage", f"Storing the upload under {self.files_dir} failed: {fs.describe(exc)}"
            ) from exc

    def dataset_folder(self, dataset_id: str) -> Path:
        """The dataset's folder, created private when missing."""
        folder = self.files_dir / dataset_id
        with self.storing():
            fs.private_dir(folder)
        return folder

    def stage(self, stream: IO[bytes]) -> tuple[Path, IO[bytes], int]:
        """Copy ``stream`` into a new staged file: (path, the open and flocked file, size).
        Keep the file open until it is put in place or removed (``fs.sweep`` spares it)."""
        with self.storing():
            path, out = fs.stage(self.files_dir)
        try:
            size = 0
            while block := stream.read(COPY_BLOCK):
                with self.storing():
                    out.write(block)
                size += len(block)
            with self.storing():
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            out.close()
            remove([path])
            raise
        return path, out, size

    def put(self, staged: Path, dataset_id: str, doc_id: str) -> Path:
        """Rename a staged file to the document's path; returns that path."""
        final = self.files_dir / dataset_id / doc_id
        with self.storing():
            os.replace(staged, final)
        return final

    def delete_document(self, dataset_id: str, doc_id: str) -> None:
        (self.files_dir / dataset_id / doc_id).unlink(missing_ok=True)

    def delete_dataset(self, dataset_id: str) -> None:
        shutil.rmtree(self.files_dir / dataset_id, ignore_errors=True)


def remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
