"""Repositories: one module per entity; each takes a connection and never commits."""
