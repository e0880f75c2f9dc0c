"""Cluster discovery tests (a package, so that its conftest and helpers never shadow the top-level ones)."""
