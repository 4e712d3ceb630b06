"""The control plane's use cases: what the native API and every seed dialect may do with
conferences, caller lists, participants and calls out. They raise domain errors
(`control.usecases.errors`); each API translates those into its own document's shape."""
