# A package, so that the cluster fixtures (package scope) end with the last test here: the
# session leaves the cluster's network namespace before the other tiers run.
