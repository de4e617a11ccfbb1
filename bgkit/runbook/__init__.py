"""Notebook runs: the papermill runner, the run archive, and ``record()``."""
