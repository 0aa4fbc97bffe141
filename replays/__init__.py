"""Everything that reads runs back: the web viewer, labels and their export, replay."""
