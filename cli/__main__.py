"""`python -m cli`: the same as the `ticketwire` command."""

from cli.main import main

main()
