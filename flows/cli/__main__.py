import sys

from melodyflow.flows.cli.app import main

sys.exit(main())
