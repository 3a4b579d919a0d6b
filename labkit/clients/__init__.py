"""Clients that talk to the lab server over real sockets and time what they do.

Each client is sync (usable from any cell) and runs on labkit's private client loop.
"""
