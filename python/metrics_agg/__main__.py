"""`python -m metrics_agg` runs the CLI (same as the `metrics-agg` script)."""

import sys

from metrics_agg.local.cli import main

sys.exit(main())
