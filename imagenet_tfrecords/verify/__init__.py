"""`--verify`: check finished shards, one by one and across the whole output."""
