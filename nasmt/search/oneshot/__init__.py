"""One-shot search (`nasmt search --oneshot`): one weight-sharing supernet trained once,
then thousands of candidates scored with inherited weights, then the front finished.

`bank` (the supernet's files in the run directory, and the one way to get an inherited
candidate from them), `train` (phase 1: the supernet's training, resumable per epoch),
`evaluate` (phase 2: candidates in batches as Ray tasks, recorded like trials), `driver`
(the three phases), `check` (`nasmt oneshot-check`: does inheritance rank correctly?).
"""
