"""`python -S -m labkit.net.netem CONFIG_JSON`: the proxy process (see backends.py)."""

import sys

from .backends import _child_main

_child_main(sys.argv[1])
