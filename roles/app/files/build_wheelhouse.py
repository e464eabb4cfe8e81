"""Build the app's wheels on the controller for the hosts' Python.

pip evaluates environment markers (such as ``python_full_version < "3.11.3"``) against the
interpreter running it. The controller's Python may be a newer patch release than the hosts',
so pip is run with the hosts' full version in place of its own: the wheelhouse then holds
every wheel that ``pip install --no-index`` on a host asks for.

Usage: build_wheelhouse.py HOST_PYTHON_VERSION WHEEL_DIR REQUIREMENTS_FILE
"""

import platform
import sys


def main() -> int:
    host_version, wheel_dir, requirements = sys.argv[1:4]
    host_minor = tuple(int(part) for part in host_version.split(".")[:2])
    if host_minor != sys.version_info[:2]:
        print(f"The hosts run Python {host_version} but the controller builds wheels with "
              f"{platform.python_version()}: the minor versions must match. Set "
              "app_controller_python to a Python {}.{} interpreter.".format(*host_minor),
              file=sys.stderr)
        return 2
    platform.python_version = lambda: host_version
    from pip._internal.cli.main import main as pip_main

    return pip_main(["wheel", "--quiet", "--wheel-dir", wheel_dir, "--requirement",
                     requirements])


if __name__ == "__main__":
    sys.exit(main())
