"""bidsfill.io"""
