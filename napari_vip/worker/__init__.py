"""Request/result types, the Engine that serves them, and the background process with its client.

Nothing here imports Qt or napari: the same Engine runs inside the worker process (GUI) and in
the command-line tool.
"""
