"""The one write path to a destination table, used by the stream, the copy and verify."""
