"""Masked autoregressive generation with continuous tokens (MAR, Li et al. 2024) on the 8x8 digits: a bidirectional
transformer reveals the tokens of a random order over K iterations, and a small adaLN MLP head samples each revealed
token by a per-token diffusion chain. MARVAL (Gu et al. 2026) replaces that chain by a one-step head distilled with
the engine's score divergences, per token; MARVAL-RL back-propagates a reward through the K iterations."""
