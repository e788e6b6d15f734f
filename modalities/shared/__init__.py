"""What backends share, so that no backend imports another.

The diffusers layer (images, PDE fields, 3D score distillation): a diffusers network plus its scheduler
config as the engine's denoiser with classifier-free guidance (`denoiser`), teacher folders (`teacher`,
`folders`), the one/few-step student generator (`student`) and teacher sampling (`sampling`). Figure
helpers (`plots`). The 8x8 digits data (`digits`), its classifier (`digits_classifier`, weights in
`weights/`) and digits-FID (`digits_eval`), for any backend that makes digits."""
