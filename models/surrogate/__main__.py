import sys

from models.surrogate.cli import main

if __name__ == "__main__":
    sys.exit(main())
