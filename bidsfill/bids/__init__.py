"""bidsfill.bids"""
