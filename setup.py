"""The one compiled part: the shared RTP port's per-packet path (bridge/rtp/_rtpcols.c).

Everything else is in pyproject.toml. `optional`: without a C compiler the bridge still
installs and runs that path in numpy (`bridge/rtp/native.py` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bridge.rtp._rtpcols",
            ["bridge/rtp/_rtpcols.c"],
            extra_compile_args=["-O2", "-fno-fast-math"],
            optional=True,
        )
    ]
)
