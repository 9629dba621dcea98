"""Diffusion models for inpainting: networks, noise schedules, samplers, preparation, weights."""
