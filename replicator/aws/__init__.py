"""The AWS boundary: the only package that imports aiobotocore, aioboto3 or botocore."""
