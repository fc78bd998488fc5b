"""Task names the config checks without building a task, standard library only: the tasks whose
problems are generated (no records, so no fields, split or subset to name). The builders of
every task are `dashrl.data.tasks.TASKS`.
"""

from __future__ import annotations

PROCEDURAL = ("arithmetic", "wordproblems")
