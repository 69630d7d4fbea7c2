"""Engines map the one shard worker over a plan's shard specs."""
