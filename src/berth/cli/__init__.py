"""`berth`: the docker-compatible command line. Thin: parse, call one engine function, render."""
