"""Modality backends; importing this package registers the built-in ones."""
from . import toy  # noqa: F401

try:  # the image backend needs the `image` extra (diffusers, transformers, scikit-learn)
    from . import image  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    _IMAGE_MISSING = str(e)

try:  # the text backend needs the `text` extra (transformers, tokenizers, datasets)
    from . import text  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    _TEXT_MISSING = str(e)

try:  # the PDE backend needs the `pde` extra (scipy, matplotlib) and diffusers
    from . import pde  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    _PDE_MISSING = str(e)
