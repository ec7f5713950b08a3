"""Stage one local peer with Cedar Backup 3's own LocalPeer (run with the bench venv's python).

Usage: python cedar_localpeer.py COLLECT_DIR TARGET_DIR
Prints the number of files Cedar staged.
"""

import sys

from CedarBackup3.peer import LocalPeer


def main():
    source, target = sys.argv[1], sys.argv[2]
    count = LocalPeer("local", source).stagePeer(target)
    print(count)


if __name__ == "__main__":
    main()
