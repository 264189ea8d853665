from replicator.cli import entry

entry()
