"""bidsfill.diffusion"""
