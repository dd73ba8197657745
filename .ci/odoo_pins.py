"""Print pip constraints pinning the installed dependencies of Odoo to their versions.

Used by .ci/run: installing the test tooling must not move requests, urllib3,
cryptography, lxml... away from the versions the installed Odoo runs with.
Prints nothing when Odoo is not installed as a distribution. Standard library only.
"""

import re
from importlib import metadata


def main():
    try:
        requires = metadata.requires("odoo") or []
    except metadata.PackageNotFoundError:
        return
    seen = set()
    for requirement in requires:
        if "extra ==" in requirement:
            continue
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group(0)
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
