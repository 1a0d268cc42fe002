"""CIBA attribution (the paper's Eq. 3-4) over a benchmark: feature spaces, words, the job, its statistics."""
