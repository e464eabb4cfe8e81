# Copyright: slipway contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled backup's entry point on the database host (run) and on the copy's target
(receive): the collection's module_utils, installed beside this file, do the work.

    python3 -I slipway_backup.py run
    python3 -I slipway_backup.py receive DEST_DIR RETENTION
"""

import os
import sys

# -I leaves this directory off sys.path: the module_utils tree installed beside this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.slipway.django.plugins.module_utils.scheduled_backup import (  # noqa: E402
    main,
)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
