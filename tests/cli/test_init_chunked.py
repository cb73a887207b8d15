"""`init` checks a parquet dataset chunk by chunk and still warns of a small held-out set."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from unlearn_ops.params import Params
from unlearn_ops.serving.gates import workspace_holdout_warning

if TYPE_CHECKING:
    from tests.conftest import CliRunner


def test_init_from_parquet_warns_as_the_whole_table_would(tmp_path: Path, cli: CliRunner) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame.rename(columns={"target": "label"})
    wine.insert(0, "record_id", range(len(wine)))
    wine.to_parquet(tmp_path / "wine.parquet", index=False)
    expected = workspace_holdout_warning(
        Params.from_mapping({"dataset": {"source": "wine.parquet"}}), base_dir=tmp_path
    )
    assert expected is not None

    code, _out, err = cli(
        ["init", str(tmp_path / "ws"), "--dataset", str(tmp_path / "wine.parquet")]
    )

    assert code == 0, err
    assert f"warning: {expected}" in err
