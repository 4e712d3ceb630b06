"""The one compiled part (bridge/rtp/_rtpcols.c): the shared RTP port's per-packet path and the
vectorised tick's mix.

Everything else is in pyproject.toml. `optional`: without a C compiler the bridge still
installs and runs that path in numpy (`bridge/rtp/native.py` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bridge.rtp._rtpcols",
            ["bridge/rtp/_rtpcols.c"],
            # IEEE arithmetic as numpy does it: the jitter figures must match to the bit
            extra_compile_args=["-O2", "-fno-fast-math", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
