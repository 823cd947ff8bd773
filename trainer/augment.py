"""Image augmentation at load time, seeded and resumable (openpi's recipe for pi0.5 training).

Non-wrist cameras of robot samples: a random crop of `crop` of each side, scaled back to full size, and a
rotation within +-`degrees` (one affine warp, edges repeated). Every present camera: colour jitter
(brightness, contrast, saturation). Wrist cameras move with the gripper, so they are not warped; web
images are not warped either, because their `<loc>` box targets would no longer match the pixels.

The draws of batch k come from a generator seeded by (seed, k) alone, so a resumed run (or a batch built
by another dataloader worker) is augmented exactly like the uninterrupted run. Evaluation does not
augment. Images stay uint8 [B, C, H, W, 3] on the way in and out (the batch's layout): the work is done
in floats in [0, 1] and rounded back."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from vlamix.schemas.embodiment import CAMERA_SLOTS
from vlamix.trainer.data import Batch
from vlamix.trainer.seeds import seeded

__all__ = ["WARPED_SLOTS", "AugmentImages"]

WARPED_SLOTS = tuple(i for i, s in enumerate(CAMERA_SLOTS) if "wrist" not in s)


@dataclass(frozen=True)
class AugmentImages:
    seed: int
    crop: float = 0.95  # side of the crop, as a share of the image's
    degrees: float = 5.0
    brightness: float = 0.3  # factors drawn from [1 - x, 1 + x]
    contrast: float = 0.4
    saturation: float = 0.5

    def __call__(self, batch: Batch, index: int, first: int = 0, total: int | None = None) -> Batch:
        """`batch` (uint8 images) augmented with the draws of batch number `index`. A rank's part of a
        global batch of `total` rows, starting at row `first`, takes those rows' draws: any split of the
        global batch over processes augments every sample alike."""
        g = seeded(self.seed, "augment", index)
        images = batch.images
        b, c = images.shape[:2]
        total = b if total is None else total
        u = torch.rand(total, c, 6, generator=g)[first : first + b]  # every draw is made, used or not
        x = images.flatten(0, 1).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W] in [0, 1]
        warp = torch.zeros(b, c, dtype=torch.bool)
        warp[:, list(WARPED_SLOTS)] = True
        warp &= batch.image_mask & batch.has_actions[:, None]
        if warp.any():
            angle = (u[..., 0] * 2 - 1) * math.radians(self.degrees)
            shift = (u[..., 1:3] * 2 - 1) * (1 - self.crop)  # the crop's centre, in [-1, 1] coordinates
            cos, sin = angle.cos() * self.crop, angle.sin() * self.crop
            theta = torch.stack(
                [torch.stack([cos, -sin, shift[..., 0]], -1), torch.stack([sin, cos, shift[..., 1]], -1)], -2
            ).flatten(0, 1)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
            x = torch.where(warp.flatten()[:, None, None, None], warped, x)
        jitter = lambda k, amount: (1 + (u[..., k] * 2 - 1) * amount).flatten()[:, None, None, None]  # noqa: E731
        x = (x * jitter(3, self.brightness)).clamp(0, 1)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        mean = gray.mean(dim=(2, 3), keepdim=True)
        x = ((x - mean) * jitter(4, self.contrast) + mean).clamp(0, 1)
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        x = ((x - gray) * jitter(5, self.saturation) + gray).clamp(0, 1)
        x = (x * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1)
        present = batch.image_mask.flatten()[:, None, None, None]
        x = torch.where(present, x, images.flatten(0, 1))
        return replace(batch, images=x.reshape(images.shape))
