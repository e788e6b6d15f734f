"""The 3D modality: scenes (density + colour voxel grids) rendered in plain PyTorch from random cameras and
distilled from a teacher of images with the engine's divergences: SDS, VSD, Dive3D's SIM, f-divergences. Its exact
teacher is a mixture over renders of known scenes, closed form at every noise level, so which divergence reaches
which scene of a prompt is measured, not guessed."""
