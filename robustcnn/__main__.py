"""``python -m robustcnn``: the same command line as the ``robustcnn`` script."""

from .cli import main

main()
