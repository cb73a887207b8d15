"""Dask (distributed, prefect-dask): the task runner of shard tasks, and where they may run."""
