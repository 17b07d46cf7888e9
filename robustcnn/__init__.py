"""robustcnn: adversarial-robustness and bias audits for trained CNNs."""

from . import _runtime

_runtime.wait_passively()
_runtime.keep_freed_memory()

__version__ = "0.1.0"

from .api import audit, load_report  # noqa: E402
from .results.report import Report  # noqa: E402

__all__ = ["Report", "__version__", "audit", "load_report"]
