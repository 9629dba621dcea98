"""bidsfill.train"""
