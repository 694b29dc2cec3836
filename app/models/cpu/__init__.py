"""The CPU model profile: small models shipped inside Python packages, run offline.

- captioner (``captioner.py``): speech transcript / subtitles, RapidOCR on-screen text,
  visual measurements;
- policy (``policy.py``): a retrieval navigator (all-MiniLM-L6-v2) that speaks the
  LongVideo-R1 protocol;
- video_qa (``video_qa.py``): the leaf's speech and on-screen text ranked against the query.

Models load lazily, once per process, from package files; nothing touches the network.
``app.models.factory`` builds them from the settings.
"""
