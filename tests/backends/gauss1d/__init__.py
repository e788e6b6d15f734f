"""A 1-D Gaussian teacher with an exact denoiser: the worked example of a new modality (docs/architecture.md).
Used as `modality: backends.gauss1d.backend:Gauss1DBackend`; an installed package would add one entry point."""
