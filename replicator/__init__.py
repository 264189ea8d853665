"""replicator: keeps a DynamoDB table continuously copied into another from its stream."""

__version__ = "0.1.0"
