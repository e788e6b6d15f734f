"""Images as continuous tokens: non-overlapping p x p patches in raster order, each flattened channel-major
((C, p, p) -> C p^2 numbers). 8x8 digits with p = 2 give 16 tokens of 4 numbers; p = 4 gives 4 tokens of 16."""
from __future__ import annotations

from torch import Tensor


def check_patch(image: int, patch: int) -> None:
    """One-line error when p x p patches do not tile an image x image picture."""
    if not isinstance(patch, int) or isinstance(patch, bool) or patch < 1 or image % patch:
        divisors = [d for d in range(1, image + 1) if image % d == 0]
        raise ValueError(f"patch {patch!r} does not tile {image}x{image} images; choose one of: "
                         f"{', '.join(map(str, divisors))}")


def patchify(x: Tensor, patch: int) -> Tensor:
    """(N, C, H, W) -> (N, L, C p^2) with L = (H/p)(W/p), patches in raster order."""
    n, c, h, w = x.shape
    check_patch(h, patch)
    check_patch(w, patch)
    x = x.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: Tensor, patch: int, channels: int = 1) -> Tensor:
    """(N, L, C p^2) -> (N, C, H, W) for a square grid of L patches."""
    n, length, dim = tokens.shape
    side = round(length**0.5)
    if side * side != length or dim != channels * patch * patch:
        raise ValueError(f"{length} tokens of {dim} numbers are not a square grid of {channels}x{patch}x{patch} "
                         "patches")
    x = tokens.reshape(n, side, side, channels, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, channels, side * patch, side * patch)
