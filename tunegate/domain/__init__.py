"""The domain: jobs and their transition table, files, fine-tuned models, data sets, job
requests and the base-model catalog. Imports only the kernel (settings, ids, errors)."""
