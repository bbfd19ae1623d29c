"""``python -m osad_lib.data.prepare NAME SOURCE_DIR DATA_ROOT [--seed 42] [--force] [--dedupe]``."""

import sys

from osad_lib.data.prepare.manifest import main

sys.exit(main())
