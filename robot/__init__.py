"""robot: a small async chatbot service in front of an OpenAI-compatible API.

See robot/README.md for the API, settings and design notes; ``python -m robot`` runs it.
"""

__version__ = "1.0.0"
