"""The pipeline: a recipe (YAML) and the stages that turn it into artifacts."""
