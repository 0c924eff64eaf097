"""`python -m gputui.agent`: run the agent."""

import sys

from .main import main

sys.exit(main())
