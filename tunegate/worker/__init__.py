"""Workers: claim jobs from the store, validate their files, run trainings in child processes."""
