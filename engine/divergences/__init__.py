"""Divergences, one short class per family: continuous ones in DIVERGENCES (their samples are
differentiable), the policy-gradient estimator for tokens in ESTIMATORS."""
from .base import DIVERGENCES, WEIGHTINGS, Critics, Divergence, per_element, per_example
from .fdiv import F_FUNCTIONS, FDivergence, FFunction
from .ikl import SDS, IntegralKL
from .policy import ESTIMATORS, PolicyGradient, group_normalise
from .reward import NoDivergence
from .score import FGM, SIM, ScoreDivergence, SiD
from .uni import UniInstruct

__all__ = [
    "DIVERGENCES", "ESTIMATORS", "WEIGHTINGS", "F_FUNCTIONS", "Critics", "Divergence", "FFunction",
    "IntegralKL", "SDS", "FDivergence", "ScoreDivergence", "SiD", "SIM", "FGM", "PolicyGradient",
    "UniInstruct", "NoDivergence", "group_normalise", "per_element", "per_example",
]
