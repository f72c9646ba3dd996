import sys

from tokvec.cli import main

sys.exit(main())
