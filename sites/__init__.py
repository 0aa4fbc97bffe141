"""Local target sites that the bundled tasks run against."""
