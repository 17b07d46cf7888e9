"""Natural shifts: common corruptions (``corrupt``, check ``corruptions``) and small translations and
rotations (check ``spatial``)."""

from .corruptions import BENCHMARK, CORRUPTIONS, HELD_OUT, corrupt

__all__ = ["BENCHMARK", "CORRUPTIONS", "HELD_OUT", "corrupt"]
