"""Local fake upstreams speaking the four vendors' protocols (see server.py)."""
