"""bidsfill.report"""
