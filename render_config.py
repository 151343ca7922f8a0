"""Render the supervisord (and Gunicorn) configuration from environment variables.

Usage: python render_config.py --help
"""

import os
import sys

from renderer.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ))
