"""The papers bidsfill cites, by key: fill methods, segmenters and the engine.

Plain data, so every layer may name a reference by its key (the fill registry, the
segmenters) and the report writes each one once.
"""

from __future__ import annotations

__all__ = ["REFERENCES"]

REFERENCES: dict[str, str] = {
    "battaglini": "Battaglini M, Jenkinson M, De Stefano N. Evaluating and reducing the impact "
    "of white matter lesions on brain volume measurements. Hum Brain Mapp. 2012;33(9):2062-71. "
    "doi:10.1002/hbm.21344",
    "fsl": "Jenkinson M, Beckmann CF, Behrens TEJ, Woolrich MW, Smith SM. FSL. NeuroImage. "
    "2012;62(2):782-90. doi:10.1016/j.neuroimage.2011.09.015",
    "ants": "Avants BB, Tustison NJ, Song G, Cook PA, Klein A, Gee JC. A reproducible evaluation "
    "of ANTs similarity metric performance in brain image registration. NeuroImage. "
    "2011;54(3):2033-44. doi:10.1016/j.neuroimage.2010.09.025",
    "guizard": "Guizard N, Nakamura K, Coupé P, Fonov VS, Arnold DL, Collins DL. Non-local means "
    "inpainting of MS lesions in longitudinal image processing. Front Neurosci. 2015;9:456. "
    "doi:10.3389/fnins.2015.00456",
    "prados": "Prados F, Cardoso MJ, Kanber B, et al. A multi-time-point modality-agnostic "
    "patch-based method for lesion filling in multiple sclerosis. NeuroImage. 2016;139:376-84. "
    "doi:10.1016/j.neuroimage.2016.06.053",
    "durrer": "Durrer A, Wolleb J, Bieder F, et al. Denoising diffusion models for 3D healthy "
    "brain tissue inpainting. In: Deep Generative Models (DGM4MICCAI 2024), LNCS 15224. "
    "Springer; 2025. arXiv:2403.14499",
    "friedrich": "Friedrich P, Durrer A, Wolleb J, Cattin PC. cWDM: Conditional wavelet "
    "diffusion models for cross-modality 3D medical image synthesis. arXiv:2411.17203 (2024)",
    "repaint": "Lugmayr A, Danelljan M, Romero A, Yu F, Timofte R, Van Gool L. RePaint: "
    "Inpainting using denoising diffusion probabilistic models. CVPR 2022:11461-71",
    "ddpm": "Ho J, Jain A, Abbeel P. Denoising diffusion probabilistic models. NeurIPS 2020",
    "rombach": "Rombach R, Blattmann A, Lorenz D, Esser P, Ommer B. High-resolution image "
    "synthesis with latent diffusion models. CVPR 2022:10684-95",
    "ddim": "Song J, Meng C, Ermon S. Denoising diffusion implicit models. ICLR 2021",
    "atropos": "Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC. An open source multivariate "
    "framework for n-tissue segmentation with evaluation on public data. Neuroinformatics. "
    "2011;9(4):381-400. doi:10.1007/s12021-011-9109-y",
    "fast": "Zhang Y, Brady M, Smith S. Segmentation of brain MR images through a hidden Markov "
    "random field model and the expectation-maximization algorithm. IEEE Trans Med Imaging. "
    "2001;20(1):45-57. doi:10.1109/42.906424",
    "nipype": "Gorgolewski K, Burns CD, Madison C, et al. Nipype: a flexible, lightweight and "
    "extensible neuroimaging data processing framework in Python. Front Neuroinform. 2011;5:13. "
    "doi:10.3389/fninf.2011.00013",
}
