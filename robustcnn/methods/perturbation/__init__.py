"""Imperceptible perturbations: the attack cascade behind the ``adversarial`` check, as a library.

Use alone::

    from robustcnn.methods.perturbation import evaluate
    result = evaluate(model, x, y, norms=["linf"], eps={"linf": [0.0, 0.1, 0.3]})
    result.min_norm("linf")   # (N,) smallest adversarial L-inf perturbation found (inf: none)
    result.robust("linf")     # (N, 3) robust flags per epsilon
"""

from .apgd import apgd
from .bpda import MaskingResponse
from .cascade import TOL, AttackCost, NormResult
from .diagnostics import WARNING_PREFIX
from .epsilons import default_eps, default_headline
from .evaluate import PerturbationResult, evaluate
from .library import ATTACKS, DEFAULT_ATTACKS, AttackSettings
from .losses import dlr, margin
from .square import square_attack

__all__ = [
    "ATTACKS",
    "DEFAULT_ATTACKS",
    "TOL",
    "WARNING_PREFIX",
    "AttackCost",
    "AttackSettings",
    "MaskingResponse",
    "NormResult",
    "PerturbationResult",
    "apgd",
    "default_eps",
    "default_headline",
    "dlr",
    "evaluate",
    "margin",
    "square_attack",
]
