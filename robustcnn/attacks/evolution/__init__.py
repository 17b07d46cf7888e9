"""Evolved fooling images (Nguyen, Yosinski & Clune 2015): MAP-Elites over direct and CPPN encodings.

Importing the package registers the ``fooling-evolution`` check.
"""

from . import check  # noqa: F401
