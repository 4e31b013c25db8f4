"""Dockerfile builds: parsing, shell-word expansion, .dockerignore and the builder."""
