"""python -m fastseed.report: the variance study of one or more stores (the command line is __main__.py)."""
