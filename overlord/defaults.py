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

# --- tuning: timeouts, polls, caps and retries, named after what they tune ---

#: Seconds between two reads of the whole plan while following it (progress display).
FOLLOW_POLL = 0.1
#: Seconds between two looks for lost workers' steps while following a distributed plan.
FOLLOW_TICK = 5.0
#: Seconds between two reads of a plan's state while waiting for it to settle (a transition
#: made in this process, by an in-process worker, ends the wait at once), when workers in
#: other processes run it ...
FOLLOW_STATE_POLL = 0.02
#: ... and in embedded mode, where only a command in another shell (``overlord cancel``)
#: changes it from outside.
FOLLOW_STATE_POLL_EMBEDDED = 0.5
#: Seconds between two looks, by a worker's (or beat's) watchdog, at the running plans.
WATCHDOG_INTERVAL = 10.0
#: Seconds past its timeout after which a running step counts as lost with its worker.
LOST_STEP_MARGIN = 60
#: Seconds between two checks, by the rollback, that no step of the plan is still running.
ROLLBACK_POLL = 0.2
#: Seconds added to the longest step timeout for the broker's visibility timeout (a message
#: unacknowledged that long is handed out again).
VISIBILITY_MARGIN = 300
#: Seconds a SQLite connection waits for a lock before giving up.
SQLITE_BUSY_TIMEOUT = 30
#: SQLite connections a thread keeps open (one per database it used last); more are closed.
SQLITE_CONNECTIONS_KEPT = 4
#: Weight of the newest run in a step's expected duration (the rest is what was remembered).
DURATION_WEIGHT = 0.5
#: Seconds a health check may take when a person waits for the answer (``overlord models``).
HEALTH_SHOW_TIMEOUT = 2.0
#: Seconds a "down" health record is trusted without a second look when no other endpoint
#: would take the work.
HEALTH_RECHECK_AFTER = 5.0
#: Seconds between two tries of a model call waiting for its endpoint's slot (with jitter).
#: A release wakes one waiter at once (BLPOP on the slot's free list), so this only bounds
#: how late a slot that came back by lease expiry is seen; short polls by many waiters
#: cost CPU that the hand-over itself then lacks.
SLOT_POLL = 0.2
#: Seconds a minion step's retry on the fallback endpoint needs at least; with less left it fails.
MINION_MIN_RETRY = 5.0
#: Seconds a minion waits on a model request longer than the relay does (the relay answers
#: first, saying why).
MINION_RELAY_MARGIN = 5.0
#: Bytes of a minion's result file read back at most.
MINION_RESULT_MAX = 1024 * 1024
#: Seconds the Docker engine has to answer a ping before it counts as absent.
DOCKER_PING_TIMEOUT = 1.0
#: Seconds to wait for a minion container killed when its time was up to be gone.
CONTAINER_KILL_GRACE = 15.0
#: Bytes of one chat request through the model relay (the whole conversation).
RELAY_MAX_REQUEST = 4 * 1024 * 1024
#: A request over the relay's size cap is still read (and dropped) up to this many bytes
#: before the 413, so the client's send does not break on a closed socket.
RELAY_DRAIN_MAX = 1 << 20
#: Bytes of one model answer through the relay.
RELAY_MAX_RESPONSE = 4 * 1024 * 1024
#: Model listings (``GET /v1/models``) a minion may ask the relay for in one run.
RELAY_MAX_MODEL_LISTS = 3
#: Seconds: how soon the relay stops once the minion's run is over.
RELAY_SHUTDOWN_POLL = 0.02
#: Seconds ``git ls-remote`` may take when release planning checks the tag is not on the remote.
REMOTE_TAG_CHECK_TIMEOUT = 20.0
#: Seconds one webhook delivery attempt may take.
WEBHOOK_TIMEOUT = 5.0
#: Attempts per webhook delivery.
WEBHOOK_ATTEMPTS = 3
#: Seconds to wait before a webhook's 2nd, 3rd ... attempt.
WEBHOOK_BACKOFF = (1.0, 2.0)
#: Seconds a process waits at exit for webhook deliveries still in flight.
WEBHOOK_EXIT_WAIT = 10.0
#: Characters of a failure's reason a notification sends at most (one line, cut with an ellipsis).
NOTIFY_MAX_REASON = 200
#: Secret values shorter than this are not searched for in texts (they would match ordinary
#: words); they are still removed from project commands' environment.
SECRET_MIN_LENGTH = 4
#: Characters of a name (a project's, in a task's display name) shown on one line at most.
DISPLAY_NAME_LIMIT = 40
#: Seconds a Celery remote-control question (which queues are consumed, which worker holds
#: a step) waits for workers' answers.
INSPECT_TIMEOUT = 1.0
#: Seconds the broker has to answer before a command refuses it as unreachable (exit 2).
BROKER_CHECK_TIMEOUT = 2.0
#: Seconds to connect to, and then to wait on, the Redis that holds slots, leases and health.
REDIS_CONNECT_TIMEOUT = 5.0
REDIS_SOCKET_TIMEOUT = 30.0
#: Seconds between two polls of the broker by an in-process worker: embedded (the private
#: server), and on a shared broker. Short, so a command ends at once when its plan settles.
WORKER_POLL_EMBEDDED = 0.02
WORKER_POLL = 0.1
#: Seconds a thread may keep the GIL while another waits for it (``sys.setswitchinterval``)
#: in a process running an in-process worker (Python's default is 0.005).
SWITCH_INTERVAL = 0.001
#: Seconds an in-process worker has to finish its tasks when its command ends.
WORKER_SHUTDOWN_TIMEOUT = 30.0
#: Seconds the embedded broker (a private redis-server) has to exit once killed.
EMBEDDED_BROKER_STOP_WAIT = 5.0
#: Repositories asked at once for their checked-out branch when a plan starts.
BRANCH_READ_THREADS = 8
#: Repositories fetched at once by ``overlord status --fetch``.
FETCH_THREADS = 32
#: Threads that start ``overlord status``'s git calls (starting a process blocks its
#: thread until the child has exec'd: one thread alone starts too few at once) ...
SCAN_LANES = 8
#: ... and git processes each of them keeps running.
SCAN_WIDTH = 2
#: ``overlord status``'s cache of merged-branch lists by commit id, in the state directory.
STATUS_CACHE_FILE = "overlord-status-cache.json"
#: What ``overlord status`` read of each configuration file it validated, by the file's
#: SHA-256, in the state directory (``core.status_config``).
CONFIG_DIGEST_FILE = "overlord-config-digest.json"
#: Pending plans looked through for a schedule entry's proposal still waiting for a person.
PENDING_PLANS_SCANNED = 200
#: Seconds ``git check-ref-format`` may take when a branch or tag name is checked.
REF_CHECK_TIMEOUT = 30
#: Tries, and seconds between them, to switch a SQLite database to WAL while another
#: connection is switching it.
SQLITE_WAL_ATTEMPTS = 50
SQLITE_WAL_RETRY = 0.02
#: Seconds a scheduled run waits for another firing of its entry to finish proposing.
SCHEDULE_LOCK_TIMEOUT = 60.0
