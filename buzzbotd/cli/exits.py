"""Exit codes (SPEC): 0 clean stop, 78 configuration error (EX_CONFIG) or
`run` as root on another user's state (a restart cannot fix either),
75 another instance holds the lock (EX_TEMPFAIL), 1 anything else."""

EX_OK = 0
EX_FAILURE = 1
EX_TEMPFAIL = 75
EX_CONFIG = 78
