"""JSON schemas of ringgen's outputs; installed as the ringgen.schemas package (see pyproject.toml)."""
