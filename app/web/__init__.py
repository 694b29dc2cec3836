"""The dashboard's pages: HTML shells, one script and one stylesheet, hand-written.

Pure functions over plain data (no framework, no network): the API's ui router serves
the shells with the assets as files, and the job export inlines them into one page.
"""
