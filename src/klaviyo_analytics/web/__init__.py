"""The dashboard: static files served by the API's own server (see docs/dashboard.md)."""
