"""The bootstrap copy (and verify, which scans tables the same way)."""
