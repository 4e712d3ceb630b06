"""HTTP control plane: the native /v1 API (and, later, one module per seed dialect)."""
