import sys

from softjax.cli import main

sys.exit(main())
