"""bidsfill.cli"""
