"""The commands (run, copy, verify, status): wiring of the packages below, and nothing
else."""
