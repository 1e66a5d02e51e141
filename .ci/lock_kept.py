"""Check that `npm install` kept every package the committed lock file pins.

    python3 .ci/lock_kept.py COMMITTED_LOCK INSTALLED_LOCK

npm may add entries the committed lock lacks: other platforms' optional builds (@swc/core-*),
which `npm install` fills in when the registry lists them. Anything else is a failure: a pinned
package whose version, source or checksum changed, a pinned package dropped, or a new entry
that is not an optional build.
"""

from __future__ import annotations

import json
import sys


def packages(path: str) -> dict[str, dict[str, object]]:
    with open(path, encoding="utf-8") as file:
        return dict(json.load(file)["packages"])


def main(committed_path: str, installed_path: str) -> int:
    committed, installed = packages(committed_path), packages(installed_path)
    problems = []
    for name, entry in committed.items():
        now = installed.get(name)
        if now is None:
            problems.append(f"{name or 'the root'}: dropped")
            continue
        for field in ("version", "resolved", "integrity"):
            if entry.get(field) != now.get(field):
                problems.append(f"{name}: {field} {entry.get(field)!r} -> {now.get(field)!r}")
    for name in installed.keys() - committed.keys():
        if not installed[name].get("optional"):
            problems.append(f"{name}: added, and not an optional build")
    for problem in problems:
        print(f"package-lock.json changed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
