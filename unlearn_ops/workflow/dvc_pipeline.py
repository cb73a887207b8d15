"""The `dvc.yaml` of a workspace: the same pipeline the flows run, reproducible by `dvc repro`.

Stages: `prepare` (dataset minus forgotten records -> one parquet per shard), one `train`
stage per shard (so DVC reruns only the shards whose file changed), `evaluate` (held-out
accuracy into `metrics.json`) and `register` (gates, then a new MLflow version; its
number in `registry.json`). Rendered from the params because DVC's `foreach`
needs the list of shard ids, which depends on S.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unlearn_ops.params import Params
from unlearn_ops.sisa.sharding import shard_file_name

__all__ = ["render_dvc_yaml", "sync_dvc_yaml"]


def _shard_stem(shard_id: int) -> str:
    return shard_file_name(shard_id).removesuffix(".parquet")


def render_dvc_yaml(params: Params) -> str:
    """The text of `dvc.yaml` for these params."""
    shards = [_shard_stem(s) for s in range(params.sisa.shards)]
    stages: dict[str, Any] = {
        "prepare": {
            "cmd": "unlearn-ops prepare",
            "params": ["seed", "dataset", "sisa"],
            "deps": ["forgotten.json"],
            "outs": ["data/shards", "data/holdout.parquet", "ensemble.json"],
        },
        "train": {
            "foreach": shards,
            "do": {
                "cmd": "unlearn-ops train-shard ${item}",
                "params": ["seed", "sisa", "model", "training"],
                "deps": ["ensemble.json", "data/shards/${item}.parquet"],
                "outs": ["models/${item}.pt", {"models/${item}.json": {"cache": False}}],
            },
        },
        "evaluate": {
            "cmd": "unlearn-ops evaluate",
            "params": ["sisa.aggregation"],
            "deps": ["data/holdout.parquet", *[f"models/{stem}.pt" for stem in shards]],
            "metrics": [{"metrics.json": {"cache": False}}],
        },
        "register": {
            "cmd": "unlearn-ops register",
            "params": ["gates", "registry"],
            "deps": ["metrics.json", *[f"models/{stem}.json" for stem in shards]],
            "outs": [{"registry.json": {"cache": False, "persist": True}}],
        },
    }
    header = (
        "# Rendered by unlearn-ops from params.yaml (S and R fix the stages); "
        "`dvc repro` reproduces what the flows produce.\n"
    )
    return header + yaml.safe_dump({"stages": stages}, sort_keys=False)


def sync_dvc_yaml(root: Path, params: Params) -> None:
    """Write `root/dvc.yaml` rendered from `params` where it says otherwise.

    Called wherever params may have changed since the last rendering (a rollback, an S
    edited in params.yaml before the first training): the pipeline a revision versions
    then names the shard files that exist.
    """
    rendered = render_dvc_yaml(params)
    path = root / "dvc.yaml"
    if not path.is_file() or path.read_text(encoding="utf-8") != rendered:
        path.write_text(rendered, encoding="utf-8")
