"""A lease this worker holds, its fence, and the expiry of other workers' leases."""
