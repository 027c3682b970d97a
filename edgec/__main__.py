"""``python -m edgec``: the same CLI as the ``edgec`` command."""

from edgec.cli import main

main()
