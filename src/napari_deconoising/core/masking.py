"""Noise2Void blind-spot masking, vectorised on the training device."""

from __future__ import annotations

import torch

__all__ = ["blind_spot_mask", "apply_blind_spots", "mask_spots"]


def blind_spot_mask(
    shape: tuple[int, ...],
    fraction: float = 0.03125,
    radius: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    max_tries: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose blind spots and, for each, the pixel whose value replaces it.

    Positions are stratified: the patch is cut into boxes of ``1/fraction`` pixels and
    one uniformly random pixel is taken per box, so the masked fraction is ``fraction``
    on average and the spots are spread evenly. Each spot gets a random source pixel
    at most ``radius`` away along every axis that is (a) never the spot itself, also
    at the border, where an offset that would leave the patch is mirrored, and (b)
    never another spot, so a blind spot's true value never enters the network. Spots
    for which no such source is drawn within ``max_tries`` are dropped.

    Parameters
    ----------
    shape : tuple of int
        ``(batch, *spatial)``.
    fraction : float
        Target fraction of masked pixels.
    radius : int
        Neighbourhood half-width (2 gives Noise2Void's 5x5).
    generator : torch.Generator, optional
        Source of randomness (on ``device``).
    device : torch.device or str
        Where the indices are made.

    Returns
    -------
    spots, sources : torch.Tensor
        Integer tensors of shape ``(K, 1 + ndim)``: batch index then spatial
        coordinates of each blind spot and of its replacement pixel.
    """
    batch, *spatial = shape
    ndim = len(spatial)
    if any(n <= 2 * radius for n in spatial):
        raise ValueError(f"patch {tuple(spatial)} is too small for mask radius {radius}")
    box = fraction ** (-1.0 / ndim)
    counts = [int(-(-n // box)) for n in spatial]
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(c, device=device, dtype=torch.float32) for c in counts], indexing="ij"),
        dim=-1,
    )  # (*counts, ndim)
    # Integer box edges, so neighbouring boxes never share a pixel.
    start = (grid * box).floor()
    width_box = ((grid + 1) * box).floor() - start
    u = torch.rand((batch, *counts, ndim), generator=generator, device=device)
    pos = (start.unsqueeze(0) + (u * width_box.unsqueeze(0)).floor()).long()
    b = torch.arange(batch, device=device).view(batch, *([1] * ndim)).expand(batch, *counts)
    pos = pos.reshape(-1, ndim)
    b = b.reshape(-1)
    size = torch.tensor(spatial, device=device)
    keep = (pos < size).all(dim=1)
    pos, b = pos[keep], b[keep]

    is_spot = torch.zeros((batch, *spatial), dtype=torch.bool, device=device)
    is_spot[(b, *pos.unbind(1))] = True

    src = torch.empty_like(pos)
    todo = torch.arange(pos.shape[0], device=device)
    width = 2 * radius + 1
    centre = (width**ndim) // 2
    for _ in range(max_tries):
        if todo.numel() == 0:
            break
        k = torch.randint(0, width**ndim - 1, (todo.numel(),), generator=generator, device=device)
        k = k + (k >= centre).long()  # skip the centre: never the spot itself
        off = torch.stack([(k // width**(ndim - 1 - a)) % width for a in range(ndim)], dim=1) - radius
        p = pos[todo]
        cand = p + off
        outside = (cand < 0) | (cand >= size)
        cand = torch.where(outside, p - off, cand)  # mirror; still not the spot
        ok = ~is_spot[(b[todo], *cand.unbind(1))]
        src[todo[ok]] = cand[ok]
        todo = todo[~ok]
    if todo.numel():
        keep = torch.ones(pos.shape[0], dtype=torch.bool, device=device)
        keep[todo] = False
        pos, b, src = pos[keep], b[keep], src[keep]
    return torch.cat([b[:, None], pos], 1), torch.cat([b[:, None], src], 1)


def apply_blind_spots(
    x: torch.Tensor,
    fraction: float = 0.03125,
    radius: int = 2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask a batch of single-channel patches for Noise2Void training.

    Parameters
    ----------
    x : torch.Tensor
        Patches of shape ``(N, 1, *spatial)``. Not modified.

    Returns
    -------
    masked : torch.Tensor
        Copy of ``x`` with every blind spot replaced by its source pixel.
    mask : torch.Tensor
        Boolean tensor shaped like ``x``, True at blind spots.
    """
    spots, sources = blind_spot_mask((x.shape[0], *x.shape[2:]), fraction, radius,
                                     generator=generator, device=x.device)
    return mask_spots(x, spots, sources)


def mask_spots(x: torch.Tensor, spots: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the ``spots`` of ``x`` by its ``sources`` (from :func:`blind_spot_mask`); the mask too."""
    masked = x.clone()
    zero = torch.zeros_like(spots[:, 0])
    spot_idx = (spots[:, 0], zero, *spots[:, 1:].unbind(1))
    masked[spot_idx] = x[(sources[:, 0], zero, *sources[:, 1:].unbind(1))]
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[spot_idx] = True
    return masked, mask
