"""The run directory and its typed records.

`files` (names, trial directories, crash-safe I/O), `record` (`TrialRecord`,
`TrialStatus`, the documented readers), `objectives` (the catalogue and parsing),
`pareto` (fronts, hypervolume, knee). Everything a later step (report, dashboard,
export) needs from a run comes from here; none of it needs Ray.
"""

from nasmt.run.files import (
    AFFINITY_FILE,
    ERROR_FILE,
    JOURNAL_FILE,
    LATENCY_FILE,
    LOCK_FILE,
    RESULT_FILE,
    RUN_FILE,
    SPEC_FILE,
    TRIALS_FILE,
    WEIGHTS_FILE,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    ensure_dir,
    is_run_dir,
    load_run,
    read_json,
    read_jsonl,
    repair_jsonl_tail,
    trial_dir,
    write_jsonl,
)
from nasmt.run.objectives import (
    COST_OBJECTIVES,
    STATIC_COSTS,
    Objective,
    objective_label,
    objective_matrix,
    objective_names,
    objectives_from_run,
    parse_objectives,
)
from nasmt.run.pareto import (
    HV_REFERENCE,
    crowding,
    front_numbers,
    hypervolume,
    hypervolume_2d,
    hypervolume_history,
    knee_point,
    nondominated_ranks,
    normalize,
    pareto_mask,
    pareto_mask_naive,
    pareto_trials,
)
from nasmt.run.record import (
    INTERRUPTED,
    STOPPED_EARLY,
    TrialRecord,
    TrialStatus,
    append_record,
    count_status,
    front_candidates,
    read_trials,
    replace_records,
    trials_frame,
)

