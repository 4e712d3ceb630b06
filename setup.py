"""The compiled parts: bridge/rtp/_rtpcols.c (the shared RTP port's per-packet path and the
vectorised tick's mix) and bridge/tools/_loadcols.c (the load generator's per-packet work).

Everything else is in pyproject.toml. `optional`: without a C compiler the bridge still
installs and runs those paths in numpy (`bridge/rtp/native.py`, `bridge/tools/loadnative.py`
say which one runs).
"""

from setuptools import Extension, setup

# IEEE arithmetic as numpy does it: the jitter figures must match to the bit
FLAGS = ["-O2", "-fno-fast-math", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(name, [source], extra_compile_args=FLAGS, optional=True)
        for name, source in (
            ("bridge.rtp._rtpcols", "bridge/rtp/_rtpcols.c"),
            ("bridge.tools._loadcols", "bridge/tools/_loadcols.c"),
        )
    ]
)
