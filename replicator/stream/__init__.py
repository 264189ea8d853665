"""Streaming: the coordinator, lease balancing, shard lineage, one consumer per shard,
checkpoint tracking and the writer pool."""
