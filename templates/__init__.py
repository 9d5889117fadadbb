"""ringgen's jinja2 templates; installed as the ringgen.templates package (see pyproject.toml)."""
