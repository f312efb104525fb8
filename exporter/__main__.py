"""``python -m exporter`` runs the same command as ``sagemaker-tuning-exporter``."""

import sys

from exporter.cli import main

sys.exit(main())
