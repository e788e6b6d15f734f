"""Text: masked diffusion language models (MDLM) and DiDi-Instruct distillation."""
from . import backend  # noqa: F401  (registers the "text" modality)
