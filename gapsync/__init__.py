"""gapsync: carry Python packages, container images and models across an air gap."""

__version__ = "0.1.0"
