"""Exercise checkers: `lk.check.<exercise>(answer)` returns a Feedback (truthy when right).

One module per lesson; this package re-exports every checker.
"""

from ._core import Feedback, close_to, verdict  # noqa: F401 - re-exported for lessons
from .lesson00 import *  # noqa: F403
from .lesson01 import *  # noqa: F403
from .lesson02 import *  # noqa: F403
from .lesson03 import *  # noqa: F403
from .lesson04 import *  # noqa: F403
from .lesson05 import *  # noqa: F403
from .lesson06 import *  # noqa: F403
from .lesson07 import *  # noqa: F403
from .lesson08 import *  # noqa: F403
from .lesson09 import *  # noqa: F403
from .lesson10 import *  # noqa: F403
