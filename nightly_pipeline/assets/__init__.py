"""Dagster assets: each a few lines calling one library function."""
