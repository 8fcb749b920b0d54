"""The command line: the composition root of the application."""
