"""The seed documents' APIs on our bridge (Aculab, Hoiio, Orange click-to-conf, Orange
Teaming): each reads its document's requests, calls the shared use cases and translates their
domain errors into its document's error shape."""
