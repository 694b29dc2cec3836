"""``vidnav eval``: benchmarks read as distributed, run through a deployment (in process or
over HTTP), scored as the reference scores them, and reported.

``items``     one benchmark question (``BenchItem``) and the letter scoring
``readers``   LVBench, Video-MME, MLVU, LongVideoBench, CG-Bench and vidnav JSON lines
``records``   one JSONL record per question, from a finished job
``runs``      concurrent, resumable runs
``http``      the HTTP deployment (a running ``vidnav serve``)
``report``    the numbers a report shows; ``page`` the HTML page with its plots
"""
