"""Selective replication: which records a destination takes, and in what form."""
