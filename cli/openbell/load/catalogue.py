"""The profile catalogue: the k6 scripts in loadprofiles/, named by their header lines."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from openbell.errors import SpecError

HEADER = re.compile(r"^//\s*(profile|description):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Profile:
    """A load profile: its name, one-line description and script."""

    name: str
    description: str
    path: Path


def profiles_dir(explicit: str | Path | None = None) -> Path:
    """--profiles, else $OPENBELL_PROFILES, else the repository's loadprofiles/."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("OPENBELL_PROFILES")
    if env:
        return Path(env)
    from openbell.paths import repo_root

    return repo_root() / "loadprofiles"


def read_profile(path: Path) -> Profile:
    """A profile from its script's first lines (`// profile: name`, `// description: ...`)."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for _, line in zip(range(10), f, strict=False):
                match = HEADER.match(line)
                if match:
                    fields[match.group(1)] = match.group(2)
    except OSError as exc:
        raise SpecError(str(path), "", f"cannot read the script ({exc.strerror})") from exc
    return Profile(fields.get("profile", path.stem), fields.get("description", ""), path)


def list_profiles(directory: Path) -> list[Profile]:
    if not directory.is_dir():
        raise SpecError(str(directory), "", "expected a folder of k6 profiles (loadprofiles/)")
    return sorted((read_profile(p) for p in directory.glob("*.js")), key=lambda p: p.name)


def find(name_or_path: str, directory: Path) -> Profile:
    """A profile by name (from the catalogue) or by path to any k6 script."""
    path = Path(name_or_path)
    if path.suffix == ".js" and path.exists():
        return read_profile(path)
    known = list_profiles(directory)
    for profile in known:
        if profile.name == name_or_path:
            return profile
    raise SpecError("load run", name_or_path,
                    f"unknown profile; expected one of {', '.join(p.name for p in known)} or a path to a .js script")
