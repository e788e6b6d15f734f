"""The continuous toy modality: an exact Gaussian-mixture teacher (closed-form diffused score under any
Gaussian process) distilled into a one-step MLP generator; every answer is known."""
