import sys

from slipway.console.cli import main

sys.exit(main())
