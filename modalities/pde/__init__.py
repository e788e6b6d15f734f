"""The PDE modality (Phys-Instruct): solver datasets, exact discrete residuals, EDM teachers over joint
coefficient/solution fields, physics-guided few-step students and forward/inverse problems."""
