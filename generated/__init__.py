"""Committed output of `make generate`: one package per module in examples/ (do not edit)."""
