#!/usr/bin/env python3
"""Checks that `rust-version` in Cargo.toml is true for the crate's dependencies.

No second toolchain can be installed here, so the MSRV is checked in two halves: clippy's
`incompatible_msrv` lint (on in `.ci/run`'s clippy step) catches standard-library items newer
than `rust-version` in the crate's own code, and this script walks the resolved dependency
graph (normal and build dependencies only: dev-dependencies never reach users) and refuses any
package whose own `rust-version` is newer than the limit for that feature set.

Usage: msrv.py <limit> [cargo metadata feature arguments...]
"""
import json
import subprocess
import sys


def version_key(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    limit, features = sys.argv[1], sys.argv[2:]
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", *features],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {package["id"]: package for package in metadata["packages"]}
    nodes = {node["id"]: node for node in metadata["resolve"]["nodes"]}
    root = metadata["resolve"]["root"]
    seen, pending, too_new = set(), [root], []
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        package = packages[current]
        wanted = package.get("rust_version")
        if wanted and version_key(wanted) > version_key(limit):
            too_new.append(f"{package['name']} {package['version']} needs Rust {wanted}")
        for dep in nodes[current]["deps"]:
            kinds = {kind["kind"] for kind in dep["dep_kinds"]}
            if current == root and kinds <= {"dev"}:
                continue
            if kinds - {"dev"}:
                pending.append(dep["pkg"])
    label = " ".join(features) or "default features"
    if too_new:
        print(f"rust-version {limit} ({label}) is not true:\n  " + "\n  ".join(sorted(too_new)))
        sys.exit(1)
    print(f"rust-version {limit} ({label}): {len(seen)} packages, none newer")


main()
