"""The SISA core: record ids to shards and slices, content-addressed checkpoints, deterministic
training, planning a forget, aggregation, the ensemble and its exactness certificate.

Pure: imports none of mlflow, dvc, prefect, boto3 or great_expectations.
"""
