"""The web viewer: runs list, run pages with live steps, labelling. ``create_viewer(runs_dir)`` builds the app."""

from replays.viewer.app import create_viewer
from replays.viewer.server import ViewerServer

__all__ = ["create_viewer", "ViewerServer"]
