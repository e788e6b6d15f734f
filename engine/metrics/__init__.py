"""Evaluation metrics: Frechet distance, sample distances, mode coverage, exact discrete ones."""
from .discrete import exact_kl, total_variation
from .distances import energy_distance, sliced_wasserstein
from .entropy import kl_to, knn_entropy
from .frechet import frechet_distance, frechet_from_stats, sample_stats
from .modes import ModeReport, gaussian_radius, mode_report

__all__ = [
    "ModeReport",
    "energy_distance",
    "exact_kl",
    "frechet_distance",
    "frechet_from_stats",
    "gaussian_radius",
    "kl_to",
    "knn_entropy",
    "mode_report",
    "sample_stats",
    "sliced_wasserstein",
    "total_variation",
]
