"""Mutational fuzzing of bonelesion's DICOM reader (test tooling, not product code).

A deterministic campaign (`fuzz.campaign`): seeds are real scanner files from
``../shared/data`` (found at run time, never copied) and small phantom studies written by
`bonelesion.phantom.write_study`; each case mutates one seed export (`fuzz.mutate`: byte-level,
structure-aware and file-system mutations) and runs every reading entry point on it
(`fuzz.runner`: ``index``, ``series --json``, ``convert``, ``load_series``, ``load_volume``,
``run``) in a child process with time and memory limits, checking exit codes, exception
types, hangs, memory, stdout discipline, refusal messages and writes outside the output
folder. Failures are minimised (`fuzz.minimise`, delta debugging over bytes) and saved.

Run ``python -m fuzz --help`` with ``tests`` on ``PYTHONPATH`` (``make fuzz``).
"""
