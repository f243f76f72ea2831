"""The synthetic sample project generator, one module per section (entry point: scripts/make_sample_project.py)."""
