"""Augmentations on batched tensors: weak (geometry) and strong (photometric, CutMix).

Images are float (B, C, H, W): RGB in [0, 1], or any number of normalised bands (then
colour jitter is a brightness/contrast change of all bands, greyscale is skipped and
nothing is clamped); labels (B, H, W). All randomness comes from an explicit
``torch.Generator`` (CPU), so a resumed run repeats the same augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _u(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def weak_augment(
    images: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    generator: torch.Generator,
    crop: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flips, 90-degree rotations (square tiles) and a random crop, per sample.

    Args:
        images: (B, C, H, W).
        labels: (B, H, W).
        valid: (B, H, W) bool.
        generator: Random source.
        crop: Side of the random square crop, or None for no crop.

    Returns:
        Augmented (images, labels, valid), geometry shared per sample.
    """
    out_i, out_l, out_v = [], [], []
    _, _, h, w = images.shape
    size = min(crop, h, w) if crop else None
    for b in range(images.shape[0]):
        x, y, v = images[b], labels[b], valid[b]
        if _u(generator) < 0.5:
            x, y, v = x.flip(-1), y.flip(-1), v.flip(-1)
        if _u(generator) < 0.5:
            x, y, v = x.flip(-2), y.flip(-2), v.flip(-2)
        if h == w:
            k = int(torch.randint(4, (), generator=generator))
            x, y, v = x.rot90(k, (-2, -1)), y.rot90(k, (-2, -1)), v.rot90(k, (-2, -1))
        if size is not None and (size < h or size < w):
            r = int(torch.randint(h - size + 1, (), generator=generator))
            c = int(torch.randint(w - size + 1, (), generator=generator))
            x, y, v = (
                x[:, r : r + size, c : c + size],
                y[r : r + size, c : c + size],
                v[r : r + size, c : c + size],
            )
        out_i.append(x)
        out_l.append(y)
        out_v.append(v)
    return torch.stack(out_i), torch.stack(out_l), torch.stack(out_v)


def color_jitter(
    image: torch.Tensor, brightness: float, contrast: float, saturation: float
) -> torch.Tensor:
    """Scale brightness, contrast (around the mean grey) and saturation of one (3, H, W);
    brightness and contrast (around the mean) only, unclamped, of other band counts."""
    x = image * brightness
    if image.shape[0] != 3:
        mean = x.mean()
        return (x - mean) * contrast + mean
    grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).unsqueeze(0)
    x = (x - grey) * saturation + grey
    return x.clamp(0.0, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one (C, H, W) image (reflect padding)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = image.unsqueeze(0)
    pad = min(radius, image.shape[-1] - 1, image.shape[-2] - 1)
    if pad < radius:  # tiny images: reflect padding needs pad < size
        k = k[radius - pad : radius + pad + 1]
        k = k / k.sum()
        radius = pad
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    c = image.shape[0]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x[0]


def strong_photometric(
    images: torch.Tensor,
    generator: torch.Generator,
    p_jitter: float = 0.8,
    p_grey: float = 0.2,
    p_blur: float = 0.5,
) -> torch.Tensor:
    """Colour jitter, greyscale and Gaussian blur, each applied per sample at random.

    Args:
        images: (B, C, H, W) (see the module docstring).
        generator: Random source.
        p_jitter: Probability of colour jitter (brightness/contrast/saturation 0.5-1.5).
        p_grey: Probability of converting to grey.
        p_blur: Probability of a blur with sigma in 0.1-2.0 pixels.

    Returns:
        Augmented images (same shape).
    """
    out = []
    for x in images:
        if _u(generator) < p_jitter:
            x = color_jitter(
                x, _u(generator, 0.5, 1.5), _u(generator, 0.5, 1.5), _u(generator, 0.5, 1.5)
            )
        if _u(generator) < p_grey and x.shape[0] == 3:
            x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).expand(3, -1, -1)
        if _u(generator) < p_blur:
            x = gaussian_blur(x, _u(generator, 0.1, 2.0))
        out.append(x)
    return torch.stack(out)


def cutmix_boxes(
    batch: int,
    height: int,
    width: int,
    generator: torch.Generator,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
) -> torch.Tensor:
    """Random CutMix boxes (UniMatch style): (B, H, W) bool, all False where not applied.

    Args:
        batch: Batch size.
        height, width: Image size.
        generator: Random source.
        p: Probability of a box per sample.
        area: Range of the box area as a fraction of the image.
        ratio: Range of the box aspect ratio.

    Returns:
        The boxes.
    """
    boxes = torch.zeros(batch, height, width, dtype=torch.bool)
    for b in range(batch):
        if _u(generator) >= p:
            continue
        s = _u(generator, *area) * height * width
        r = math.exp(_u(generator, math.log(ratio[0]), math.log(ratio[1])))
        bh = min(height, max(1, round(math.sqrt(s / r))))
        bw = min(width, max(1, round(math.sqrt(s * r))))
        y = int(torch.randint(height - bh + 1, (), generator=generator))
        x = int(torch.randint(width - bw + 1, (), generator=generator))
        boxes[b, y : y + bh, x : x + bw] = True
    return boxes


def apply_cutmix(tensor: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Paste, inside each sample's box, the same place of the batch's reversed sample.

    Sample ``i`` takes the box from sample ``B-1-i`` (the batch flipped), for images
    (B, C, H, W) and per-pixel maps (B, H, W) alike, so pseudo-labels stay aligned.

    Args:
        tensor: Batch to mix.
        boxes: (B, H, W) bool from :func:`cutmix_boxes`.

    Returns:
        The mixed batch (a new tensor).
    """
    m = boxes.to(tensor.device)
    if tensor.dim() == 4:
        m = m.unsqueeze(1)
    return torch.where(m, tensor.flip(0), tensor)
