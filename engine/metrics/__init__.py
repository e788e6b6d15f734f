"""Evaluation metrics: Frechet distance, precision and recall, sample distances, mode coverage, exact discrete
ones."""
from .discrete import exact_kl, total_variation
from .distances import energy_distance, sliced_wasserstein
from .draws import Estimate, energy_draws, floor_draws
from .entropy import kl_to, knn_entropy
from .frechet import frechet_distance, frechet_from_stats, sample_stats
from .modes import ModeReport, gaussian_radius, mode_report
from .precision_recall import PrecisionRecall, knn_radii, manifold_fraction, precision_recall

__all__ = [
    "Estimate",
    "ModeReport",
    "PrecisionRecall",
    "energy_distance",
    "energy_draws",
    "exact_kl",
    "floor_draws",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_radius",
    "kl_to",
    "knn_entropy",
    "knn_radii",
    "manifold_fraction",
    "mode_report",
    "precision_recall",
    "sample_stats",
    "sliced_wasserstein",
    "total_variation",
]
