"""bidsfill.evaluate"""
