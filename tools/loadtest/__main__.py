import sys

from tools.loadtest.run import main

sys.exit(main())
