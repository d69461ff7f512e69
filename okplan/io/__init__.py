"""Files in and out: sources planned on the client as byte-range splits, read and written inside tasks.

This package is a bottom layer (it imports nothing of okplan but ``okplan.errors``), so the logical
planner, the task runner and the user API can all use it:

- ``filesystems``: paths to fsspec file systems; relative paths are the client's; missing backends.
- ``listing``: a path spec (file, directory, glob, comma list) to the files it names, with sizes.
- ``codecs``: compression by extension when reading, by Hadoop or plain name when writing.
- ``splits``: ``Split(path, start, length)`` and PySpark's split-size rule.
- ``lines``: Hadoop's LineRecordReader rule: no line lost or read twice across splits.
- ``formats``: one partition of text, JSON lines, whole files or pickle batches, read in a task.
- ``sinks``: a task writes its partition as one part file under a temporary name.
- ``commit``: the client's side of the commit protocol (rename into place, ``_SUCCESS``, abort).
"""
