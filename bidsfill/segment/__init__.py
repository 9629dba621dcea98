"""bidsfill.segment"""
