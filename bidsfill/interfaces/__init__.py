"""bidsfill.interfaces"""
