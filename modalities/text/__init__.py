"""Text: masked diffusion language models (MDLM) and DiDi-Instruct distillation."""
