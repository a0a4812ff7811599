"""Tags every resource carries, so an operator can find and cost the stack's parts."""

import pulumi


def tags(role: str, **extra: str) -> dict[str, str]:
    return {
        "Project": pulumi.get_project(),
        "Stack": pulumi.get_stack(),
        "Role": role,
        "ManagedBy": "pulumi",
        **extra,
    }
