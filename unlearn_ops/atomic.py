"""Atomic file writes: a reader sees the old file or the new one, never half of either.

The data goes to a temporary file in the target's own folder (a rename is atomic only
within one file system), is flushed to disk with ``fsync``, and then ``os.replace``-s the
target. Whatever goes wrong on the way, the temporary file is removed and the target is
left as it was. The temporary file is named ``.<name>.<random>.tmp``, so globs on the
target's suffix (``*.pt``, ``*.json``) never see it.

Example::

    from pathlib import Path
    from unlearn_ops.atomic import write_atomic

    write_atomic(Path("out/weights.pt"), b"...")
    write_atomic(Path("out/shard.parquet"), lambda temp: frame.to_parquet(temp, index=False))
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["PRIVATE_MODE", "write_atomic"]

#: The mode of a file written here unless asked otherwise: `mkstemp`'s owner-only mode,
#: which every atomic write of this package has always produced (checkpoints and shard
#: weights are derived from personal data).
PRIVATE_MODE = 0o600


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes | str | Callable[[Path], object],
    *,
    mode: int = PRIVATE_MODE,
    encoding: str = "utf-8",
) -> Path:
    """Replace `path` with new content atomically, creating its folder if needed.

    Args:
        path: the file to write.
        data: the content: bytes, text (encoded with `encoding`), or a writer called
            with the temporary file's path that writes the content there itself (for
            libraries that write to a path, such as `DataFrame.to_parquet`).
        mode: permission bits of the written file (owner-only by default).
        encoding: the encoding of text content.

    Returns:
        The path written.

    Raises:
        OSError: the folder cannot be created or the file cannot be written; the target
            is unchanged and no temporary file is left.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as file:
            if isinstance(data, str):
                file.write(data.encode(encoding))
            elif isinstance(data, bytes):
                file.write(data)
        if callable(data):
            data(temp)
        with temp.open("rb+") as file:
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)
    return target


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (the folder's entry); best effort where unsupported."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
