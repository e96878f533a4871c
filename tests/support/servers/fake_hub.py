"""The Hub stand-in for tests: ``gapsync/demo/hub_standin.py`` (the demo's external zone uses the
same one), run as a script. See that module for the repo format, the HTTP API and the modes."""

from gapsync.demo.hub_standin import main

if __name__ == "__main__":
    main()
