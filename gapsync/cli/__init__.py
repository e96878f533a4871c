"""The command line: thin commands that build objects, call one operation and render its result."""
