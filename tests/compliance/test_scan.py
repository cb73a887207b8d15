"""Scanning files: tables by their ids, checkpoints and weights by the index or version."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from unlearn_ops.compliance.scan import scan_files
from unlearn_ops.sisa.checkpoint_index import CheckpointIndex, IndexEntry


def hash_id(record_id: str) -> str:
    return f"h{record_id}"


def test_tables_checkpoints_and_weights_are_judged(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    dirty, clean, anonymous = cache / "0a1b", cache / "0a1c", cache / "0a1d"
    pd.DataFrame({"record_id": [1, 2, 3], "label": [0, 1, 0]}).to_parquet(dirty)
    pd.DataFrame({"record_id": [4], "label": [0]}).to_parquet(clean)
    pd.DataFrame({"x": [1.0]}).to_parquet(anonymous)
    (cache / "0a1e").write_text("{}")  # not a table, not weights

    index = CheckpointIndex(tmp_path / "index")
    index.write(IndexEntry("aa01", 0, 0, None, ("h2",), "900150983cd24fb0d6963f7d28e17f72"))
    index.write(IndexEntry("bb01", 1, 0, None, ("h4",), "0"))
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "aa").mkdir(parents=True)
    (checkpoints / "bb").mkdir()
    (checkpoints / "cc").mkdir()
    for key in ("aa01", "bb01", "cc01"):
        (checkpoints / key[:2] / f"{key}.pt").write_bytes(b"PK\x03\x04")
    artifacts = tmp_path / "mlartifacts" / "models"
    for model_id in ("m-old", "m-new", "m-orphan"):
        (artifacts / model_id).mkdir(parents=True)
    weights_by_md5 = artifacts / "m-new" / "shard-000.pt"
    weights_by_md5.write_bytes(b"abc")  # MD5 900150983c...: key aa01
    (artifacts / "m-old" / "shard-001.pt").write_bytes(b"PK\x03\x04old")
    (artifacts / "m-orphan" / "shard-001.pt").write_bytes(b"PK\x03\x04orphan")

    report = scan_files(
        [
            ("dvc-cache", dirty),
            ("dvc-cache", clean),
            ("dvc-cache", anonymous),
            ("dvc-cache", cache / "0a1e"),
            *[("checkpoints", p) for p in sorted(checkpoints.glob("??/*.pt"))],
            *[("mlflow-artifacts", p) for p in sorted(artifacts.rglob("*.pt"))],
        ],
        forgotten={"h2", "h3"},
        hash_record_id=hash_id,
        id_columns=["record_id"],
        index=index,
        model_versions={"m-old": "1", "m-new": "2"},
        superseded_versions={"1": "r1"},
    )
    found = {(f.store, Path(f.path).name): f for f in report.findings}
    assert set(found) == {
        ("dvc-cache", "0a1b"),
        ("checkpoints", "aa01.pt"),
        ("mlflow-artifacts", "shard-000.pt"),
        ("mlflow-artifacts", "shard-001.pt"),
    }
    assert found["dvc-cache", "0a1b"].forgotten_records == 2
    assert "version 1" in found["mlflow-artifacts", "shard-001.pt"].reason
    unverified = {Path(u["path"]).name: u["reason"] for u in report.unverified}
    assert unverified == {
        "0a1d": "table without an id column",
        "cc01.pt": "no checkpoint index entry",
        "shard-001.pt": "weights of no known checkpoint",
    }
    assert report.files_scanned == {"dvc-cache": 4, "checkpoints": 3, "mlflow-artifacts": 3}
    assert not report.clean


def test_a_table_larger_than_one_batch_is_counted_whole(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "0b1c"
    ids = pa.array(range(150_000), type=pa.int64())
    # Row groups of 10,000: the scan reads the column in several batches.
    pq.write_table(pa.table({"record_id": ids}), table, row_group_size=10_000)
    forgotten = {"h0", "h65536", "h70000", "h149999", "h150000"}
    report = scan_files(
        [("dvc-cache", table)],
        forgotten=forgotten,
        hash_record_id=hash_id,
        id_columns=["record_id"],
        index=CheckpointIndex(tmp_path / "index"),
    )
    assert [(f.kind, f.forgotten_records) for f in report.findings] == [("table", 4)]


def test_shard_blobs_are_judged_by_every_version_that_references_them(tmp_path: Path) -> None:
    # Blobs (issue 15) are shared by versions; weights with fresh release noise match no
    # checkpoint, so their versions decide: a blob is dirty only if all of them are.
    blobs = tmp_path / "mlartifacts" / "blobs" / "sha256" / "ab"
    blobs.mkdir(parents=True)
    names = {"only-old": "ab" + "1" * 62, "shared": "ab" + "2" * 62, "orphan": "ab" + "3" * 62}
    for label, name in names.items():
        (blobs / name).write_bytes(b"PK\x03\x04" + label.encode())
    report = scan_files(
        [("mlflow-artifacts", blobs / name) for name in names.values()],
        forgotten={"h2"},
        hash_record_id=hash_id,
        id_columns=["record_id"],
        index=CheckpointIndex(tmp_path / "index"),
        superseded_versions={"1": "r1"},
        blob_versions={names["only-old"]: ["1"], names["shared"]: ["1", "2"]},
    )
    assert [Path(f.path).name for f in report.findings] == [names["only-old"]]
    assert "version(s) 1, none of which honours request r1" in report.findings[0].reason
    assert [Path(u["path"]).name for u in report.unverified] == [names["orphan"]]
