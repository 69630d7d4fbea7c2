"""Behind purge_mem_caches.py: host memory, leftover processes and the purge flow."""
