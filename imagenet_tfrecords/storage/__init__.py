"""Where files live: local folders with durable writes, and folders in buckets."""
