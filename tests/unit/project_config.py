"""How a settings Option is declared in Pulumi.yaml (shared by the generator check and tests)."""

from components.settings import Option


def declaration(option: Option) -> dict:
    """Pulumi project config accepts string, integer, boolean and array; a key without a
    default is required by the CLI, so optional keys default to "" or [] (= unset)."""
    decl: dict = {"description": option.description}
    if option.type == "array":
        decl["type"] = "array"
        decl["items"] = {"type": "string"}
    elif option.type == "number":
        decl["type"] = "string"  # no float type in project config; settings parses it
    else:
        decl["type"] = option.type
    if not option.required:
        if option.default is None:
            decl["default"] = [] if option.type == "array" else ""
        elif option.type == "number":
            decl["default"] = str(option.default)
        else:
            decl["default"] = option.default
    # Optional secrets carry a default, which project config does not combine with "secret";
    # settings.py refuses them in plain text instead.
    if option.secret and option.required:
        decl["secret"] = True
    return decl
