"""robot: a self-hosted chatbot on AWS. Reads settings, composes components, exports outputs."""

import pulumi

from components import settings, topology

for name, value in topology.deploy(settings.load()).items():
    pulumi.export(name, value)
