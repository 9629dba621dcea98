"""bidsfill: fill brain lesions with healthy-looking tissue, as a BIDS App."""

__version__ = "0.1.0"
__all__ = ["__version__"]
