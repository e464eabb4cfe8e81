"""Stand-in for ansible-test's get-pip bootstrap script, whose download host is unreachable
from here: install the bundled pip with ensurepip, then pip-install what ansible-test asks for
(from the configured package index)."""

import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
