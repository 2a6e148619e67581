"""``SqlStore``'s queries, one module per aggregate (files, jobs and their workers, events and
checkpoints, fine-tuned models and their permissions, uploads), each a part of the store class
built on the engines, reads and paging of ``common``."""
