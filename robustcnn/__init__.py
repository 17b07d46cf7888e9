"""robustcnn: adversarial-robustness and bias audits for trained CNNs."""
__version__ = "0.1.0"

from .api import audit, load_report  # noqa: E402
from .reports.report import Report  # noqa: E402

__all__ = ["audit", "load_report", "Report", "__version__"]
