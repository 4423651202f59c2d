"""The ``pgisolate`` command (``ls``, ``gc``, ``run``, ``url``, ``templates``, ``demo``, ``bench``):
the same program as the Rust binary, carried by the wheel."""

import sys

from pgisolate import _pgisolate


def main() -> None:
    argv = sys.argv[:]
    argv[0] = "pgisolate"
    sys.exit(_pgisolate.cli_main(argv))


if __name__ == "__main__":
    main()
