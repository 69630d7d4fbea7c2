"""What a build writes: records, shards with their DALI indexes, the manifest and dataset_info.json."""
