"""Where packs train: this process (local.py: the worker loop and a plain scan), one process per
device of this node (pool.py), or the actors of a Ray cluster (ray.py connects and starts them;
driver.py is the one process writing the store; actor.py what each actor runs). Every way of running trains the same jobs (fastseed/jobs.py) against
the same store, claiming seeds, so they can share one study: several terminals, a pool, a cluster."""
