"""ringgen examples; each module is built into generated/<module>/ by `make generate`."""
