import sys

from uehead.cli import main

sys.exit(main())
