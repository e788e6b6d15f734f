"""The discrete toy modality: an exact Markov-chain teacher distilled into an N-step masked-diffusion
student by DiDi-Instruct's policy gradient; the student's distribution and its KL are computed exactly."""
