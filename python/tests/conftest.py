import os
import sys

# The package is imported from this source tree even when pytest is started
# from the repository root without the pyproject's settings.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
