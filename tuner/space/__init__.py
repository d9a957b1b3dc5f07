"""Search files: the validated search (`SearchSpec`), its schema checks, and reading the YAML. No
Ray, no MLflow."""
