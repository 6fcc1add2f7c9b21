"""`python -m sewcli` runs the `sew` command."""

from sewcli.cli import main

if __name__ == "__main__":
    main()
