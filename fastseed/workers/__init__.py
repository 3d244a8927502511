"""Where packs train: this process (local.py: the worker loop and a plain scan), or one process per
device of this node (pool.py). Every way of running trains the same jobs (fastseed/jobs.py) against
the same store, claiming seeds, so they can share one study: several terminals, a pool, a cluster."""
