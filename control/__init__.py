"""Control plane (HTTP API, persistence, confctl) built on the bridge."""
