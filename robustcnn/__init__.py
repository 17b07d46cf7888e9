"""robustcnn: adversarial-robustness and bias audits for trained CNNs."""
import os

# OpenMP threads that spin while waiting make small-batch torch calls up to 30x slower when
# another process holds a core (measured on 2 cores); passive waiting costs next to nothing.
# Effective only if robustcnn is imported before torch; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .api import audit, load_report  # noqa: E402
from .reports.report import Report  # noqa: E402

__all__ = ["audit", "load_report", "Report", "__version__"]
