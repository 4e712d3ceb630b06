"""Media worker processes: the rooms' mixing off the main process (see pool.py, process.py)."""
