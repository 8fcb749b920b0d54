"""Klaviyo Analytics: a self-hosted analytics warehouse for Klaviyo accounts."""

__version__ = "0.1.0"
