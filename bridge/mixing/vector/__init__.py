"""The vectorised media engine: one tick over every G.711 room of a process (see tick.py)."""
