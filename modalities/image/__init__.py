"""Images: diffusers teachers (UNet2DModel, UNet2DConditionModel + text encoder, DiT; EDM,
DDPM-family and flow-matching schedulers), the shipped digits teachers and their students."""
