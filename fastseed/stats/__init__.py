"""Statistics of a seed-variance study, on plain arrays (accuracies in percent).

runs        a store's records as arrays (Runs, load_runs), streamed; logits read on demand
summary     Picard's table columns, quantiles, the CI of the mean (t, bootstrap), per-epoch bands
extremes    best and worst seeds, how rare the most extreme of N is; expected best/worst/spread of n
            seeds (unbiased, Dodge et al.'s, normal theory)
transfer    two fixed halves of the test set: do lucky seeds carry over?
examples    per test image: the share of seeds right, the most common wrong class
testset     how much of the seed-to-seed variance is the finite test set (Jordan 2024)
ensembles   majority votes of k seeds' predictions; soft votes from logits
calibration expected calibration error and reliability per seed, from logits
compare     two recipes: bootstrap difference, Welch, Mann–Whitney, P(A beats B), seeds for power
factors     the ResNet-18 study's init vs data-order variance shares
confseq     confidence sequences for a mean accuracy: intervals valid at every number of seeds at once
collapses   runs far below the others: the test, the mean of normal runs plus collapses (MixtureCS),
            the collapse rate's confidence sequence
sequential  stopping rules on them: until the mean is known to ±W, until A vs B is decided (scan
            --until-ci, --versus)
synthetic   stores with known distributions, for tests, benchmarks and demos
"""
