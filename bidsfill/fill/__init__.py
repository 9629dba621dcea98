"""bidsfill.fill"""
