"""Statistics of a seed-variance study, on plain arrays (accuracies in percent).

runs        a store's records as arrays (Runs, load_runs)
summary     Picard's table columns, quantiles, percentile bootstrap, per-epoch bands
extremes    best and worst seeds; expected best/worst/spread of n seeds (exact and normal theory)
transfer    two fixed halves of the test set: do lucky seeds carry over?
ensembles   majority votes of k seeds' predictions
compare     two recipes: bootstrap difference, Welch, Mann–Whitney, P(A beats B), seeds for power
factors     the ResNet-18 study's init vs data-order variance shares
synthetic   stores with known distributions, for tests, benchmarks and demos
"""
