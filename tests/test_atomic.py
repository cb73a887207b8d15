"""write_atomic on real files: content, mode, folders, and nothing left behind on failure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from unlearn_ops.atomic import write_atomic


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_bytes_text_and_writer_land_whole(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "file.bin"
    assert write_atomic(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    write_atomic(target, "é\n")
    assert target.read_bytes() == "é\n".encode()
    write_atomic(target, lambda temp: temp.write_bytes(b"from a writer"))
    assert target.read_bytes() == b"from a writer"
    assert _leftovers(target.parent) == []


def test_owner_only_by_default_and_mode_when_asked(tmp_path: Path) -> None:
    private = write_atomic(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    shared = write_atomic(tmp_path / "b.json", "{}", mode=0o644)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644


def test_a_writer_that_fails_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "shard.parquet"
    target.write_bytes(b"old")

    def half_then_fail(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_the_temp_file_hides_from_suffix_globs(tmp_path: Path) -> None:
    seen: list[list[Path]] = []
    write_atomic(tmp_path / "k.pt", lambda temp: seen.append([*temp.parent.glob("*.pt"), temp]))
    (globbed_during_write, temp) = (seen[0][:-1], seen[0][-1])
    assert globbed_during_write == []
    assert temp.parent == tmp_path
    assert temp.name.startswith(".k.pt.")
    assert temp.name.endswith(".tmp")
    assert [p.name for p in tmp_path.glob("*.pt")] == ["k.pt"]


def test_a_folder_that_cannot_be_made_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):  # noqa: PT011 (FileExistsError or NotADirectoryError)
        write_atomic(blocker / "inside.json", "{}")
    assert blocker.read_text() == "not a folder"
