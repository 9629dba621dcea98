"""Image metrics inside the artefact mask: SSIM, PSNR and a texture distance.

Texture: the radial power-spectrum distance. A generative fill cannot put each cell
where it was, so pixel metrics (SSIM, PSNR) reward blur; what it should keep is the
texture: how much contrast there is at each spatial scale (cell bodies 5-25 µm, the
fine grain of the neuropil). The distance is the mean absolute difference of the
log radially-averaged power spectra of the masked region (mean removed, the same
mask window for both images, so the window's own spectrum cancels), over all radial
frequencies above the lowest. 0 = same spectrum; a smooth fill (Telea, biharmonic)
loses high-frequency power and scores high.
"""

from __future__ import annotations

import numpy as np

__all__ = ["masked_psnr", "masked_ssim", "radial_spectrum", "spectrum_distance"]


def masked_ssim(ref: np.ndarray, img: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """Mean of the SSIM map (7x7 windows) over the mask."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(ref.astype(np.float64), img.astype(np.float64),
                                    data_range=data_range, full=True)  # fmt: skip
    return float(smap[mask].mean())


def masked_psnr(ref: np.ndarray, img: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((ref[mask].astype(np.float64) - img[mask].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def radial_spectrum(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of the mean-removed masked region."""
    vals = image.astype(np.float64)
    vals = (vals - vals[mask].mean()) * mask
    power = np.abs(np.fft.fftshift(np.fft.fft2(vals))) ** 2
    h, w = image.shape
    yy, xx = np.indices((h, w))
    r = np.hypot((yy - h // 2) / h, (xx - w // 2) / w) * min(h, w)
    rbin = np.rint(r).astype(int)
    nbins = min(h, w) // 2
    keep = rbin < nbins
    sums = np.bincount(rbin[keep], power[keep], minlength=nbins)
    counts = np.bincount(rbin[keep], minlength=nbins)
    return sums / np.maximum(counts, 1)


def spectrum_distance(ref: np.ndarray, img: np.ndarray, mask: np.ndarray) -> float:
    """Mean |log10 P_ref - log10 P_img| over radial frequencies 2 .. Nyquist."""
    a = radial_spectrum(ref, mask)[2:]
    b = radial_spectrum(img, mask)[2:]
    return float(np.mean(np.abs(np.log10(a + 1e-12) - np.log10(b + 1e-12))))
