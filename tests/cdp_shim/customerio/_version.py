"""``customerio.analytics.version``: this client's version."""

from analytics_cio import __version__ as VERSION

__all__ = ["VERSION"]
