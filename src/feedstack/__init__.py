"""feedstack: an end-to-end personalized feed system, measured by itself."""

__version__ = "0.1.0"
