import sys

from genbench_tasks.cli import main

sys.exit(main())
