"""The shard plan: which image goes to which shard, and how many shards a split gets."""
