import sys

from diffkg_pyg.cli import main

sys.exit(main())
