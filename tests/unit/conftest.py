import os
import sys

# Unit tests import the program's packages (components) and the shared harness.
HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)
