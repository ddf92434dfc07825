"""Running units (one input shard each) and the phases of a job; only `ray.py` imports Ray."""
