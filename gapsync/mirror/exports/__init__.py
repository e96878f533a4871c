"""Exports from the mirror into servers and files the site already has (an index with the upload
API, an OCI registry, an MLflow registry, hashed requirements and pylock.toml). Unlike the publish
targets they are not the mirror itself.
"""
