"""Every default Overlord uses, documented in one place."""

from __future__ import annotations

#: Where the configuration file lives when neither --config nor $OVERLORD_CONFIG is given.
CONFIG_PATH = "~/.atom/overlord.yml"
#: Name of the SQLite state database created beside the configuration file.
STATE_FILE = "overlord.db"
#: A project's test command when the configuration names none.
TEST_COMMAND = "python -m pytest -q"
#: At most this many steps of one plan run at once.
MAX_CONCURRENT_STEPS = 5
#: Seconds a step may run before it counts as failed.
STEP_TIMEOUT = 300
#: A merged branch older than this many days is stale.
STALE_BRANCH_DAYS = 30
#: Seconds between two health checks of a model endpoint.
HEALTH_INTERVAL = 300
#: Seconds a health check may take.
HEALTH_TIMEOUT = 3.0
#: The Celery queue of direct (git) steps; model queues are named after their endpoint.
DIRECT_QUEUE = "direct"
#: Branches clean-stale-branches never deletes.
PROTECTED_BRANCHES = ("main", "master", "develop")
#: Seconds a git command may take before it is stopped.
GIT_TIMEOUT = 120
#: Characters of a step's output kept in the state database.
OUTPUT_TAIL = 4000
#: Minion images (built from workers/Dockerfile.local and workers/Dockerfile.cloud).
MINION_IMAGE_LOCAL = "overlord-minion-local:latest"
MINION_IMAGE_CLOUD = "overlord-minion-cloud:latest"
#: Where the process backend puts its minions' worktrees, inside the git common dir.
OWN_WORKTREES = "overlord-worktrees"
#: Distributed mode: seconds without a heartbeat after which a running step whose worker
#: does not answer counts as lost and is sent again (``overlord.tasks.liveness``); also
#: the lease of a repository's lock, which a killed worker's holds no longer than this.
LOST_WORKER_SECONDS = 30
#: Seconds between two renewals of a running step's heartbeat and of a repository's lease.
HEARTBEAT = 5.0
#: Lease of a global concurrency slot; a slot of a killed worker returns after it.
SLOT_LEASE_SECONDS = 60
#: Plain-language translation by the planning model (overlord/translate.py): seconds a
#: request may take (and may wait for a slot of its endpoint), most characters of the text
#: sent, most bytes of the response read, most characters of the answer kept, of one line,
#: and the most tokens asked for.
TRANSLATION_TIMEOUT = 30.0
TRANSLATION_MAX_TEXT = 2000
TRANSLATION_MAX_RESPONSE = 65536
TRANSLATION_MAX_ANSWER = 4000
TRANSLATION_MAX_LINE = 300
TRANSLATION_MAX_TOKENS = 512
#: Most instruction lines accepted from one translation.
TRANSLATION_MAX_LINES = 20
#: Broker priorities of a plan's steps (0 first): the longest expected rest goes first.
STEP_PRIORITIES = 10
