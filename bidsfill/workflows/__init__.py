"""bidsfill.workflows"""
