"""What a 3D run measures and writes, on the exact teacher whose scenes are known.

Held-out cameras (eval.views azimuths offset half a step from 0, at each of eval.elevations, the middle distance
and field of view) render every particle and every ground-truth scene of its prompt. Per particle: PSNR to each
scene (mean over views), its nearest scene, and whether every view agrees on it. Per prompt: the scenes reached,
the entropy of the assignment and the largest gap between the share of particles on a scene and its weight.
`ceiling_psnr` is the ground truth's own re-render: each scene fitted into a voxel grid of the particles'
resolution, rendered and compared with the analytic render (what a perfect particle could score). In the Janus
case a particle is multi-faced when, from cameras in the back sector, its render is nearer the front as seen from
there than the true back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from unidistill.engine.objective import sample_path

from .cameras import from_angles
from .fields import VoxelGrids
from .render import render
from .views import seen_from, view_bin


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """PSNR (dB) of pictures in [0, 1] over every axis but the first: (N, ...) -> (N,)."""
    return -10 * torch.log10((a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10))


def saturation(rgb: Tensor, opacity: Tensor) -> float:
    """Mean HSV saturation (max - min) / max of the pixels with opacity > 0.5; rgb (N, 3, H, W) in [0, 1]."""
    hi, lo = rgb.max(1).values, rgb.min(1).values
    s = (hi - lo) / hi.clamp_min(1e-6)
    mask = opacity[:, 0] > 0.5
    return float(s[mask].mean()) if mask.any() else 0.0


class Evaluator:
    def __init__(self, cfg, teacher, prompts: list[str]):
        """`teacher`: the exact mixture over the prompts' scenes (the reference, whatever teacher is distilled), or
        None where the prompts name no scenes."""
        self.cfg, self.teacher, self.prompts = cfg, teacher, prompts
        e, c = cfg.eval, cfg.cameras
        az = torch.tensor([360.0 * (k + 0.5) / e.views for k in range(e.views)] * len(e.elevations))
        el = torch.tensor([v for v in e.elevations for _ in range(e.views)], dtype=torch.float32)
        middle = lambda pair: torch.full_like(az, sum(pair) / 2)
        self.cameras = from_angles(az, el, middle(c.distance), middle(c.fovy))
        self._truth: dict | None = None

    def _scene_truth(self) -> dict:
        """Analytic renders (K, V, 3, H, W) in [0, 1] of every scene from the held-out cameras (cached), and their
        voxel re-renders' PSNR."""
        if self._truth is None:
            size, t = self.cfg.eval.size, self.teacher
            renders = torch.stack([(t.render_scene(k, self.cameras, size) + 1) / 2 for k in range(len(t.fields))])
            g = self.cfg.generator
            grid = VoxelGrids(1, g.resolution, g.bound, g.blob, g.blob_radius)
            ceiling = []
            for k, f in enumerate(t.fields):
                grid.fit(0, f)
                with torch.no_grad():
                    out = render(grid.field(torch.zeros(len(self.cameras), dtype=torch.long)), self.cameras, size, size,
                                 n_samples=self.cfg.render.n_samples, background=t.background, bound=g.bound)
                ceiling.append(float(psnr(out.rgb, renders[k]).mean()))
            front = None
            if t.janus_front is not None:
                cams = seen_from(self.cameras, 0)
                front = torch.stack([(t.render_scene(k, cams, size) + 1) / 2 for k in range(len(t.fields))])
            self._truth = {"renders": renders, "ceiling": ceiling, "front": front}
        return self._truth

    @torch.no_grad()
    def particle_renders(self, generator) -> tuple[Tensor, Tensor]:
        """(P, V, 3, H, W) rgb in [0, 1] and (P, V, 1, H, W) opacity of every particle from the held-out cameras."""
        v, size = len(self.cameras), self.cfg.eval.size
        rgb, opa = [], []
        for i in range(len(generator)):
            out = generator.rendered(torch.full((v,), i, dtype=torch.long), self.cameras, size)
            rgb.append(out.rgb)
            opa.append(out.opacity)
        return torch.stack(rgb), torch.stack(opa)

    def metrics(self, generator) -> dict[str, float]:
        if self.teacher is None:  # prompts without ground-truth scenes (a text teacher): nothing to compare with
            return {}
        truth = self._scene_truth()
        renders, opacity = self.particle_renders(generator)
        weights = self.teacher.weights.cpu()
        out: dict[str, float] = {"ceiling_psnr": float(np.mean(truth["ceiling"]))}
        fid, cons, cov, ent, werr, sat, janus = [], [], [], [], [], [], []
        back = (view_bin(self.cameras.azimuth) == 2).nonzero().squeeze(1)
        for p, name in enumerate(self.prompts):
            ks = weights[p].nonzero().squeeze(1)
            rows = range(p * generator.per_prompt, (p + 1) * generator.per_prompt)
            picks = []
            for i in rows:
                per_view = torch.stack([psnr(renders[i], truth["renders"][k]) for k in ks.tolist()])  # (K_p, V)
                k_best = int(per_view.mean(1).argmax())
                picks.append(k_best)
                fid.append(float(per_view.mean(1)[k_best]))
                cons.append(float((per_view.argmax(0) == k_best).all()))
                k = int(ks[k_best])
                sat.append(saturation(renders[i], opacity[i]) - saturation(truth["renders"][k], opacity[i]))
                if truth["front"] is not None and len(back):
                    to_front = psnr(renders[i][back], truth["front"][k][back]).mean()
                    to_back = psnr(renders[i][back], truth["renders"][k][back]).mean()
                    janus.append(float(to_front > to_back))
            share = torch.bincount(torch.tensor(picks), minlength=len(ks)).double() / len(picks)
            target = weights[p, ks].double() / weights[p, ks].sum()
            cov.append(float((share > 0).sum()))
            ent.append(float(-(share[share > 0] * share[share > 0].log()).sum()))
            werr.append(float((share - target).abs().max()))
            out[f"modes/{name}"] = cov[-1]
            out[f"modes_of/{name}"] = float(len(ks))
        out.update(fidelity_psnr=float(np.mean(fid)), consistency=float(np.mean(cons)),
                   modes=float(np.sum(cov)), modes_of=float(sum(int((w > 0).sum()) for w in weights)),
                   assignment_entropy=float(np.mean(ent)), weight_error=float(np.max(werr)),
                   saturation_drift=float(np.mean(sat)))
        if janus:
            out["janus_rate"] = float(np.mean(janus))
        return out

    @torch.no_grad()
    def save_samples(self, generator, run_dir: Path, step: int) -> list[Path]:
        """A PNG grid: one row per particle, its renders from the front, left, back and right."""
        from .outputs import save_strip

        size = self.cfg.eval.size
        cams = from_angles(torch.tensor([0.0, 90.0, 180.0, 270.0]), torch.full((4,), 15.0),
                           torch.full((4,), sum(self.cfg.cameras.distance) / 2), torch.full((4,), 55.0))
        frames = []
        for i in range(len(generator)):
            out = generator.rendered(torch.full((4,), i, dtype=torch.long), cams, size)
            frames.append(out.rgb.permute(0, 2, 3, 1))
        frames = (torch.cat(frames).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        return [save_strip(frames, sample_path(run_dir, step, ".png"), columns=4)]

    @torch.no_grad()
    def export(self, generator, run_dir: Path) -> Path:
        """run_dir/scenes/: the particles' grids (particles.safetensors), and per particle a turntable GIF with its
        PNG strip, depth and opacity images, and a coloured mesh (.glb; a particle with no surface is noted)."""
        from safetensors.torch import save_file

        from .outputs import export_mesh, extract_mesh, save_views, turntable

        folder = Path(run_dir) / "scenes"
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()},
                  str(folder / "particles.safetensors"))
        grids, notes = generator.grids, []
        for i in range(len(generator)):
            stem = f"{self.prompts[i // generator.per_prompt].replace(' ', '_')}_{i % generator.per_prompt:02d}"
            index = torch.tensor([i])
            field = lambda pts, idx=index: grids(idx.expand(pts.shape[0]), pts)
            views = turntable(field, n_frames=self.cfg.eval.turntable, height=64, width=64,
                              n_samples=self.cfg.render.n_samples, background=tuple(self.cfg.render.background),
                              distance=sum(self.cfg.cameras.distance) / 2, bound=grids.bound)
            save_views(views, folder, stem)
            try:
                mesh = extract_mesh(lambda p, idx=index: grids.density_at(idx, p[None])[0],
                                    lambda p, idx=index: grids.colour_at(idx, p[None])[0], bound=grids.bound)
                export_mesh(mesh, folder / f"{stem}.glb")
            except ValueError as e:
                notes.append(f"{stem}: {e}")
        if notes:
            (folder / "meshes_skipped.txt").write_text("\n".join(notes) + "\n")
        return folder
