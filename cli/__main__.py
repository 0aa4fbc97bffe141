"""`python -m cli ...` is the `glassbox` command (the tests call it this way, before any install)."""

from cli.app import main

main()
