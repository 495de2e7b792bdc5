"""DICOM input: discovery, catalogue of an export, series → `Volume`, vendor knowledge.

Modules, one job each:

* `discovery` — the one walk over an export (links without loops, regular files only);
* `structure` — the structure check of a header before any parser allocates or recurses;
* `values` — the one value-reading layer: typed parsers, guarded conversion, plausibility;
* `fastheader`, `header` — a file's header (fast Part 10 reader, pydicom otherwise), its
  validated pixel module and frames;
* `multiframe` — enhanced multi-frame objects → one flat header per frame;
* `stack_key` — which frames form one volume (with the series context);
* `identity` — substitutes for missing UIDs; the patient of a file;
* `duplicates` — the same image twice is read once, different images at one position refused;
* `geometry` — validate a stack and lay it on a regular grid; `tilt` — gantry-tilt resampling;
* `decode` — pixels into one preallocated array, modality LUT applied;
* `assembly` — `Stack` with its `Volume`, `SeriesInfo`, role and problems;
* `series` — `load_series` / `load_volume`; `convert` — NIfTI + JSON (+ bval/bvec);
* `catalogue` (`records`, `read`, `store`, `query`) and `index` — the SQLite catalogue;
* `vendors` — vendor knowledge, by vendor and by topic.
"""
