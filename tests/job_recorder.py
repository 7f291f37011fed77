"""A recorder of a job client's callbacks, shared by the worker and server tests."""

from __future__ import annotations


class Recorder:
    """Collects what a client reports for the jobs submitted through it: results, failures and progress."""

    def __init__(self):
        self.done, self.errors, self.progress = [], [], []

    def submit(self, client, request, channel=None):
        return client.submit(request, channel, on_done=self.done.append, on_error=self.errors.append,
                             on_progress=self.progress.append)
