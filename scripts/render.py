#!/usr/bin/env python3
"""Render a host template (${NAME} placeholders) into place, only if the result differs.

    render.py TEMPLATE DEST --settings FILE [--set NAME=VALUE ...] [--mode 0644] [--owner USER:GROUP]

Values come from the settings file (KEY=VALUE lines, as bootstrap writes it), then --set.
A placeholder with no value is an error naming it: a half-rendered config is never written.
Prints "changed DEST" or "unchanged DEST" so callers (bootstrap, tests) know whether to
reload the service; writes atomically (temp file + rename) so a reader never sees half a file.
Uses only the standard library: it runs on the host's system python3 before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import shlex
import string
import sys
import tempfile


def read_settings(path: str) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored; values may be shell-quoted."""
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, raw = line.partition("=")
            if not sep or not key.isidentifier():
                raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
            parts = shlex.split(raw) if raw else [""]
            values[key] = parts[0] if len(parts) == 1 else " ".join(parts)
    return values


def render(template: str, values: dict[str, str]) -> str:
    tpl = string.Template(template)
    missing = sorted({m for m in tpl.get_identifiers() if m not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return tpl.substitute(values)


def install(content: str, dest: str, mode: int, owner: str | None) -> bool:
    """Write content to dest if it differs (or mode/owner differ). Returns True if anything changed."""
    changed = True
    try:
        with open(dest, encoding="utf-8") as fh:
            changed = fh.read() != content
    except FileNotFoundError:
        pass
    uid = gid = -1
    if owner:
        import grp
        import pwd

        user, _, group = owner.partition(":")
        uid = pwd.getpwnam(user).pw_uid
        gid = grp.getgrnam(group).gr_gid if group else -1
    if changed:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest) or ".", prefix=".render-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
            os.chmod(tmp, mode)
            if owner:
                os.chown(tmp, uid, gid)
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        return True
    st = os.stat(dest)
    if (st.st_mode & 0o7777) != mode:
        os.chmod(dest, mode)
        changed = True
    if owner and (uid not in (-1, st.st_uid) or gid not in (-1, st.st_gid)):
        os.chown(dest, uid, gid)
        changed = True
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template")
    parser.add_argument("dest")
    parser.add_argument("--settings", action="append", default=[], help="KEY=VALUE file (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--mode", default="0644")
    parser.add_argument("--owner")
    args = parser.parse_args(argv)
    values: dict[str, str] = {}
    try:
        for path in args.settings:
            values.update(read_settings(path))
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
            values[key] = value
        with open(args.template, encoding="utf-8") as fh:
            content = render(fh.read(), values)
        changed = install(content, args.dest, int(args.mode, 8), args.owner)
    except (OSError, KeyError, ValueError) as exc:
        print(f"render: {args.template} -> {args.dest}: {exc}", file=sys.stderr)
        return 1
    print(("changed " if changed else "unchanged ") + args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
