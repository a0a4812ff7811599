import os
import sys

# Host-test helpers (netns, aws_emulator) import each other by module name.
sys.path.insert(0, os.path.dirname(__file__))
