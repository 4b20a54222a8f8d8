import sys

from cluster.submit import main

if __name__ == "__main__":
    sys.exit(main())
