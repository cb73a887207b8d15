"""S3 and SQS (boto3): the intake of signed request files, and submitting them."""
