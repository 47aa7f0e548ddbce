/*
 * TaskHub executor plugin ABI, version 1.7 (1.0 plus set_output, suspend and resume in 1.1,
 * report_process in 1.2, shell_params, TH_CAP_RUN_AS and th_task.run_as in 1.3, TH_CAP_CGROUP,
 * th_task.cgroup_fd and the rusage fields of th_result in 1.4, TH_CAP_DURABLE_START in 1.5,
 * TH_CAP_ADOPT, report_handle, adopt, TH_OUTCOME_LOST, TH_CAP_HOLD, hold and release in 1.6, and
 * set_output_json in 1.7; see docs/plugin-abi.md for the version history).
 *
 * A plugin is a shared library that exports one C function, TH_PLUGIN_ENTRY_SYMBOL, returning a
 * static table (th_plugin_api) that describes the plugin and holds its entry points. The host
 * (taskhubd, and `taskhubctl validate` for parameter checks) loads the library with RTLD_NOW |
 * RTLD_LOCAL, calls the entry function once, and negotiates:
 *
 *   - magic must equal TH_ABI_MAGIC;
 *   - abi_major must equal the host's TH_ABI_VERSION_MAJOR;
 *   - min_host_minor must be <= the host's TH_ABI_VERSION_MINOR (a plugin may require features
 *     added in a later minor version);
 *   - struct_size tells the host how much of the table exists: fields appended by later minor
 *     versions are read only when struct_size covers them, so old plugins work with new hosts
 *     and new plugins with old hosts.
 *
 * The first five fields of th_plugin_api never move in any version. Nothing but plain C types
 * crosses this boundary: no C++ types, no exceptions (a C++ plugin must catch everything; the
 * SDK in taskhub/plugin.hpp does this for you), status codes only.
 *
 * Memory ownership is stated next to each function. The rule of thumb: whoever allocates, frees;
 * strings passed into a call are valid only for the duration of that call unless stated otherwise.
 *
 * Threading: see th_plugin_api.thread_safety and TH_CAP_BLOCKING_EXECUTE. All host callbacks in
 * th_host_api may be called from any thread unless stated otherwise.
 *
 * Compiles as C99 and as C++.
 */
#ifndef TASKHUB_PLUGIN_API_H
#define TASKHUB_PLUGIN_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TH_ABI_MAGIC 0x54484231u /* "THB1" */
#define TH_ABI_VERSION_MAJOR 1
#define TH_ABI_VERSION_MINOR 7

/* The one symbol a plugin exports. Its name never changes between ABI versions. */
#define TH_PLUGIN_ENTRY_SYMBOL "th_plugin_entry"

/* True when a struct received across the ABI covers `field`: ptr points to a `type` with a
 * struct_size member (th_plugin_api, th_host_api, th_task, th_identity, th_result, th_health),
 * and a field appended by a later minor version exists only when
 * offsetof(type, field) + sizeof(field) <= struct_size. Check it before reading such a field,
 * e.g. TH_HAS_FIELD(host, th_host_api, set_output) && host->set_output != NULL.
 * Header-only: it adds no symbol and does not change the ABI version. Valid C99 and C++;
 * evaluates ptr once (sizeof does not evaluate its operand). */
#define TH_HAS_FIELD(ptr, type, field) \
    ((size_t)(ptr)->struct_size >= offsetof(type, field) + sizeof((ptr)->field))

#if defined(__GNUC__)
#define TH_EXPORT __attribute__((visibility("default")))
#else
#define TH_EXPORT
#endif

/* Status codes returned by plugin entry points and host services. */
typedef enum th_status {
    TH_OK = 0,
    TH_ERR_INVALID = 1,     /* bad parameters or configuration; message says which */
    TH_ERR_FAILED = 2,      /* the operation failed; message says why */
    TH_ERR_UNSUPPORTED = 3, /* the operation is not implemented by this plugin/host */
    TH_ERR_NOMEM = 4
} th_status;

/* Capabilities a plugin declares in th_plugin_api.capabilities. */
#define TH_CAP_CANCEL 0x1u           /* cancel() interrupts running work */
#define TH_CAP_HEALTH_CHECK 0x2u     /* health_check() does a real check */
#define TH_CAP_BLOCKING_EXECUTE 0x4u /* execute() blocks until the work is done: the host calls it
                                        on a worker thread of its elastic pool, never on its event
                                        loop. Without this flag execute() must return promptly and
                                        finish the work asynchronously. */
#define TH_CAP_SUSPEND 0x8u          /* ABI 1.1: suspend() and resume() stop and continue a running
                                        attempt (the table must cover and set both) */
#define TH_CAP_NO_LOG 0x10u          /* ABI 1.1: the plugin never writes to th_task.log_fd, so the
                                        host may pass -1 and save a pipe per attempt (outputs still
                                        go through set_output) */
#define TH_CAP_RUN_AS 0x20u          /* ABI 1.3: the plugin runs each attempt's processes as
                                        th_task.run_as when it is not NULL (dropping privileges in
                                        the child before exec). The host refuses `run_as` for the
                                        tasks of a plugin without this flag when the workflow file
                                        is loaded. */
#define TH_CAP_CGROUP 0x40u          /* ABI 1.4: the plugin starts every process of an attempt in
                                        th_task.cgroup_fd when it is not -1 (e.g. clone3 with
                                        CLONE_INTO_CGROUP), so that the host can freeze, kill and
                                        measure the attempt as a whole. Honoured only in
                                        a table built against ABI 1.4 or later (abi_minor). */
#define TH_CAP_DURABLE_START 0x80u   /* ABI 1.5: an attempt of this plugin must not be repeated
                                        unseen: the host commits its "starting" record to disk
                                        before it calls execute(), as for tasks with
                                        at_most_once = true. Without it, an attempt's records
                                        ride the next group commit and a crash in the
                                        milliseconds before it may run the attempt again (see
                                        docs/reliability.md). Declare it when the attempt's
                                        effect lives where a restarted taskhubd cannot find and
                                        stop it (a remote job, a message sent). */
#define TH_CAP_ADOPT 0x100u          /* ABI 1.6: the plugin's attempts run elsewhere (a cluster's
                                        batch job) and can be re-attached after taskhubd restarts:
                                        it reports each attempt's external handle with
                                        th_host_api.report_handle, which the host records, and
                                        after a restart the host calls adopt() with that handle
                                        instead of declaring the attempt lost. The table must
                                        cover and set adopt; honoured only in a table built
                                        against ABI 1.6 or later. */
#define TH_CAP_HOLD 0x200u           /* ABI 1.6: hold() and release() keep a running attempt's work
                                        from starting while its run is paused (a queued batch
                                        job that has not started yet), and let it go on resume
                                        (the table must cover and set both; a table built against
                                        ABI 1.6 or later) */

/* How the host may call into one plugin instance. */
typedef enum th_thread_safety {
    TH_THREADS_SERIAL = 0, /* the host never makes two calls into the instance at the same time,
                              except cancel(), suspend(), resume() and validate(), which for a
                              TH_CAP_BLOCKING_EXECUTE plugin may arrive on the event loop while
                              execute() runs on a worker (validate() must not touch state that
                              execute() changes), and health_check(), which runs on a thread of
                              its own at any time */
    TH_THREADS_SAFE = 1    /* calls may run concurrently from different threads */
} th_thread_safety;

typedef enum th_log_level {
    TH_LOG_DEBUG = 0,
    TH_LOG_INFO = 1,
    TH_LOG_WARN = 2,
    TH_LOG_ERROR = 3
} th_log_level;

typedef enum th_outcome {
    TH_OUTCOME_SUCCEEDED = 0,
    TH_OUTCOME_FAILED = 1,
    TH_OUTCOME_CANCELLED = 2,
    TH_OUTCOME_LOST = 3       /* ABI 1.6: the attempt's work can no longer be found (an adopted
                                 attempt whose job the cluster no longer knows): the host records
                                 the attempt as lost, with the message as the reason, and runs the
                                 task again if its retries and at_most_once allow. A host before
                                 1.6 reads it as failed. */
} th_outcome;

typedef enum th_health_state {
    TH_HEALTH_OK = 0,
    TH_HEALTH_DEGRADED = 1,
    TH_HEALTH_UNHEALTHY = 2
} th_health_state;

/* Opaque host context handed to create(); pass it back to every th_host_api call. */
typedef struct th_host_ctx th_host_ctx;
/* Opaque plugin instance returned by create(). */
typedef struct th_instance th_instance;

/* A writable, host-owned text buffer. The plugin writes a NUL-terminated string of at most
 * capacity-1 bytes (truncating if needed). capacity is always >= 1. */
typedef struct th_buffer {
    char *data;
    size_t capacity;
} th_buffer;

/* The outcome of one task attempt, reported through th_host_api.complete. */
typedef struct th_result {
    uint32_t struct_size;  /* sizeof(th_result) as the plugin knows it */
    int32_t outcome;       /* th_outcome */
    int32_t exit_code;     /* process exit code, or -1 when it does not apply */
    const char *message;   /* may be NULL; copied by the host before complete() returns */
    /* ---- ABI 1.4: read by the host only when struct_size covers them ---- */
    /* What the attempt's main process cost, from the rusage its reaping returned (wait4(), or
     * waitid() with a rusage argument): user and system CPU time in microseconds and its peak
     * resident set size in KiB (ru_maxrss); -1 when unknown (no process, or not measured). The
     * host records them as the attempt's usage when the attempt had no cgroup; with a cgroup it
     * measures the whole cgroup instead. A plugin that sets struct_size to this size must set
     * all three (to -1 when it has nothing to say); all three 0, as in a zero-initialised
     * th_result, also reads as unknown. */
    int64_t cpu_user_us;
    int64_t cpu_system_us;
    int64_t max_rss_kb;
} th_result;

typedef void (*th_fd_callback)(void *user, int fd);
typedef void (*th_timer_callback)(void *user);

/* Services the host offers a plugin. Owned by the host; valid until the instance is destroyed. */
typedef struct th_host_api {
    uint32_t struct_size; /* how much of this table exists; check before using later fields */
    uint16_t abi_major;
    uint16_t abi_minor;

    /* Reports the end of a task attempt started by execute(). Call exactly once per accepted
     * execute(), from any thread, at any time after execute() was entered (also from inside
     * execute()). A second call for the same token, or a call with an unknown token, is ignored
     * and logged by the host. The host copies everything it needs before returning. */
    void (*complete)(th_host_ctx *ctx, uint64_t token, const th_result *result);

    /* Writes a line to the daemon's log, attributed to the plugin. msg is copied. Any thread. */
    void (*log)(th_host_ctx *ctx, int32_t level, const char *msg);

    /* Asks the host to call cb(user, fd) once on its event-loop thread when fd becomes readable
     * (one-shot; call again to re-arm). fd stays owned by the plugin and must stay open until the
     * callback ran or unwatch_fd() returned. Use it with a pidfd to reap a child process without
     * holding a thread. Call only from the host's event-loop thread (inside execute(), cancel()
     * or another host callback of a non-blocking plugin). On success *watch_id receives an id. */
    th_status (*watch_fd)(th_host_ctx *ctx, int fd, th_fd_callback cb, void *user,
                          uint64_t *watch_id);
    /* Stops a watch; after it returns the callback will not run. Event-loop thread only. */
    void (*unwatch_fd)(th_host_ctx *ctx, uint64_t watch_id);

    /* Calls cb(user) once on the event-loop thread after delay_ms milliseconds. Event-loop
     * thread only. On success *timer_id receives an id. */
    th_status (*add_timer)(th_host_ctx *ctx, uint64_t delay_ms, th_timer_callback cb, void *user,
                           uint64_t *timer_id);
    /* Cancels a timer; after it returns the callback will not run. Event-loop thread only. */
    void (*cancel_timer)(th_host_ctx *ctx, uint64_t timer_id);

    /* ---- ABI 1.1: present when struct_size covers it ---- */

    /* Publishes an output of the running attempt `token`: a small name/value pair that later
     * tasks read as ${tasks.ID.outputs.NAME}. Any thread, from the moment execute() is entered
     * until complete() is called for the token. name must match [A-Za-z_][A-Za-z0-9_]*; value is
     * NUL-terminated text of at most 4096 bytes; all outputs of one attempt (names plus values)
     * must stay within 65536 bytes. A later value for a name replaces the earlier one. Both
     * strings are copied before the call returns. Returns TH_OK, or TH_ERR_INVALID (and the host
     * logs why) for an unknown or completed token, a NULL or invalid name, a NULL value or a value
     * over a cap; the attempt itself goes on. */
    th_status (*set_output)(th_host_ctx *ctx, uint64_t token, const char *name,
                            const char *value);

    /* ---- ABI 1.2: present when struct_size covers it ---- */

    /* Tells the host which process runs attempt `token`: its pid and process group (pgid; pass
     * the pid when the process leads its own group, 0 when it shares the plugin's). The host
     * records both with the process's start time before the attempt counts as running, so that
     * after a crash of taskhubd the next start stops exactly that process group, never a process
     * that reused the pid. Call right after the process started, from any thread, until
     * complete() is called for the token; a later call replaces the earlier one. Returns TH_OK,
     * or TH_ERR_INVALID (logged by the host) for an unknown or completed token or a pid <= 0. */
    th_status (*report_process)(th_host_ctx *ctx, uint64_t token, int32_t pid, int32_t pgid);
    /* ---- ABI 1.6: present when struct_size covers it ---- */
    /* Tells the host the external handle of attempt `token`: what identifies its work where it
     * runs (for a Slurm job, its job id), so that after a restart of taskhubd the host can hand it
     * back to adopt(). NUL-terminated printable text (no control characters) of 1 to 256 bytes;
     * copied before the call returns. The host records it with the attempt in its next commit
     * (it does not wait for the disk). Call as soon as the work exists, from any thread, until
     * complete() is called for the token; a later call replaces the earlier one. Returns TH_OK,
     * or TH_ERR_INVALID (logged by the host) for an unknown or completed token or an invalid
     * handle. */
    th_status (*report_handle)(th_host_ctx *ctx, uint64_t token, const char *handle);
    /* ---- ABI 1.7: present when struct_size covers it ---- */
    /* Publishes a typed output of the running attempt `token`: json is NUL-terminated text of
     * exactly one JSON value (whitespace around it allowed, strings valid UTF-8, arrays and
     * objects nested at most 64 deep, at most 1048576 bytes), which later tasks read whole as
     * ${tasks.ID.outputs.NAME} or into with a path (${tasks.ID.outputs.NAME[0]},
     * ${tasks.ID.outputs.NAME.KEY}, ${tasks.ID.outputs.NAME.length}). A JSON string publishes a
     * plain output (its content, under set_output's limits). The host stores the value compact.
     * name follows set_output's rule; a later set_output or set_output_json for the name
     * replaces the earlier value of either kind. All outputs of one attempt (names plus values,
     * plain and JSON) must stay within 1048576 bytes, the plain ones within 65536. Same threads
     * and copying as set_output. Returns TH_OK, or TH_ERR_INVALID (and the host logs why, naming
     * the output and the rule) for an unknown or completed token, a NULL or invalid name, NULL or
     * invalid JSON or a value over a limit; the attempt itself goes on. */
    th_status (*set_output_json)(th_host_ctx *ctx, uint64_t token, const char *name,
                                 const char *json);
} th_host_api;

/* ABI 1.3: the account an attempt's processes run as (a task's `run_as`), resolved by the host
 * from the password and group databases when the attempt starts. Owned by the host; valid only
 * during the execute() call, like the th_task that points to it. */
typedef struct th_identity {
    uint32_t struct_size;
    const char *user;       /* user name */
    uint32_t uid;
    uint32_t gid;           /* primary group (the group of "user:group", else the user's own) */
    const uint32_t *groups; /* supplementary groups, as initgroups() would set them */
    size_t n_groups;
    const char *home;       /* the user's home directory from the password database */
    const char *shell;      /* the user's login shell from the password database */
} th_identity;

/* One task attempt handed to execute(). Owned by the host; every pointer in it is valid only
 * during the execute() call: copy what you need later. */
typedef struct th_task {
    uint32_t struct_size;
    const char *workflow;   /* workflow name */
    const char *run_id;     /* run id */
    const char *task_id;    /* task id within the workflow */
    uint32_t attempt;       /* 1 for the first attempt */
    const char *params_json; /* the task's plugin parameters, a JSON object, NUL-terminated */
    size_t params_len;
    const char *const *env; /* NULL-terminated "NAME=value" list the task must see (TASKHUB_*
                               variables and the task's `env` table); never NULL */
    int log_fd;             /* where the attempt's output goes (in taskhubd, a pipe to the attempt's
                               log; do not seek it). Owned by the host and
                               kept open until complete() was called; dup() it to keep it.
                               -1 when the plugin declared TH_CAP_NO_LOG. */
    uint64_t timeout_ms;    /* 0 = none; informational: the host enforces it through cancel() */
    /* ---- ABI 1.3: present when struct_size covers it ---- */
    const th_identity *run_as; /* NULL: run as the daemon's own user. Only ever set for plugins
                                  that declare TH_CAP_RUN_AS. */
    /* ---- ABI 1.4: present when struct_size covers it ---- */
    int cgroup_fd;          /* a directory descriptor of the attempt's cgroup v2 (O_RDONLY |
                               O_DIRECTORY), where the attempt's processes must start; -1 when the
                               host does not contain attempts in cgroups or the plugin did not
                               declare TH_CAP_CGROUP. Owned by the host, open until complete() was
                               called. The host freezes (suspend), kills what is left after
                               complete() and measures this cgroup itself. */
} th_task;

/* Result of a health check; the message buffer is host-owned. */
typedef struct th_health {
    uint32_t struct_size;
    int32_t state; /* th_health_state */
    th_buffer message;
} th_health;

/* The table returned by the entry function. Static storage in the plugin; never freed. */
typedef struct th_plugin_api {
    /* ---- these five fields never move ---- */
    uint32_t magic;          /* TH_ABI_MAGIC */
    uint16_t abi_major;      /* TH_ABI_VERSION_MAJOR the plugin was built against */
    uint16_t abi_minor;      /* TH_ABI_VERSION_MINOR the plugin was built against */
    uint32_t struct_size;    /* sizeof(th_plugin_api) as the plugin knows it */
    uint32_t min_host_minor; /* oldest host minor version this plugin works with */

    /* ---- ABI 1.0 ---- */
    const char *name;        /* plugin name used in workflows: [a-z0-9_-]+ */
    const char *version;     /* free-form version string of the plugin itself */
    const char *description; /* one line */
    uint64_t capabilities;   /* TH_CAP_* */
    int32_t thread_safety;   /* th_thread_safety */

    /* Creates an instance. config_json is the plugin's [plugins.NAME] table from taskhub.toml as
     * a JSON object (at least "{}"). host and ctx stay valid until destroy(). On failure return
     * non-TH_OK and describe the problem in err. Called once per instance, never concurrently. */
    th_status (*create)(const th_host_api *host, th_host_ctx *ctx, const char *config_json,
                        th_instance **out, th_buffer err);

    /* Destroys an instance. All accepted tasks have completed before the host calls this. */
    void (*destroy)(th_instance *inst);

    /* Checks one task's parameters (a JSON object) when a workflow file is loaded. On a problem
     * return TH_ERR_INVALID, write what is wrong and what would be right into message, and the
     * offending parameter name (empty if none in particular) into key. Must not block for long;
     * must not have side effects. */
    th_status (*validate)(th_instance *inst, const char *params_json, th_buffer message,
                          th_buffer key);

    /* Starts one task attempt. Return TH_OK when the attempt was accepted: the plugin then calls
     * host->complete(ctx, token, ...) exactly once. Any other status means the attempt did not
     * start; err says why and complete() must not be called. Without TH_CAP_BLOCKING_EXECUTE
     * this is called on the host's event-loop thread and must return promptly. */
    th_status (*execute)(th_instance *inst, const th_task *task, uint64_t token, th_buffer err);

    /* Asks a running attempt to stop. Cooperative: the plugin completes the attempt (normally
     * with TH_OUTCOME_CANCELLED) when it has stopped. Called on the host's event-loop thread; may
     * arrive after the plugin already called complete() for the token, which must be harmless.
     * May be NULL when TH_CAP_CANCEL is not declared. */
    th_status (*cancel)(th_instance *inst, uint64_t token);

    /* Reports the plugin's health: write out->state and a short message. Called every
     * health_interval on a thread of its own (never two at once for one instance), concurrently
     * with any other call, whatever thread_safety says. May block up to the configured
     * health_timeout; a check still running then counts as failed. May be NULL when
     * TH_CAP_HEALTH_CHECK is not declared. */
    th_status (*health_check)(th_instance *inst, th_health *out);

    /* ---- ABI 1.1: read by the host only when struct_size covers them ---- */

    /* Stops a running attempt where it is (`taskhubctl pause --freeze`), e.g. SIGSTOP to its
     * process group, and resume() lets it continue. Called on the host's event-loop thread (like
     * cancel(), without the serial mutex), only for tokens the host considers running and only
     * with TH_CAP_SUSPEND; resume() only after suspend(). Either may cross the plugin's own
     * complete(), which must be harmless. A suspended attempt may still be cancelled: cancel()
     * must then also make it continue, so that it can stop. Return TH_OK, or an error when the
     * attempt could not be stopped (the host logs it and treats the attempt as running). May be
     * NULL when TH_CAP_SUSPEND is not declared. */
    th_status (*suspend)(th_instance *inst, uint64_t token);
    th_status (*resume)(th_instance *inst, uint64_t token);

    /* ---- ABI 1.3: read by the host only when struct_size covers it ---- */

    /* NULL, or a NULL-terminated list of the names of top-level parameters whose string value is
     * POSIX shell command text (the shell plugin's "command"). The host expands ${...} templates
     * inside them with escaping for the shell context each template sits in (a bare word, inside
     * '...', inside "..."), so a value always reaches the shell as one literal piece of data, and
     * refuses a template in a context it cannot make safe (inside $(...), backticks, a
     * here-document, an arithmetic expansion, a variable name) when the workflow file is loaded.
     * Static storage in the plugin. */
    const char *const *shell_params;
    /* ---- ABI 1.6: read by the host only when struct_size covers it ---- */
    /* Re-attaches to an attempt that a previous taskhubd process started (with execute() of this
     * plugin) and that was still running when that process stopped. Called once per such
     * attempt, after create() and before any new execute(), only with TH_CAP_ADOPT. task is the
     * attempt as execute() got it (same workflow, run, task, attempt number and parameters; a new
     * log_fd, whose log starts empty: deliver the attempt's output from its beginning if you
     * can). handle is the last one reported for the attempt with report_handle, or NULL when none
     * was recorded (the previous process may have stopped between starting the work and
     * recording its handle: look for the work by the attempt's identity if you can). token is the
     * attempt's new token. Return TH_OK when the attempt is adopted: the plugin then calls
     * complete() exactly once, as after execute(); use TH_OUTCOME_LOST when it turns out later
     * that the work no longer exists. Any other status means the attempt is lost, err saying why
     * ("job 4242 is no longer known to Slurm"); complete() must not be called then. Called like
     * execute() (the event-loop thread, or a worker for TH_CAP_BLOCKING_EXECUTE). May be NULL
     * when TH_CAP_ADOPT is not declared. */
    th_status (*adopt)(th_instance *inst, const th_task *task, const char *handle, uint64_t token,
                       th_buffer err);
    /* ABI 1.6, with TH_CAP_HOLD: the attempt's run was paused (`taskhubctl pause RUN`, without
     * --freeze, which calls suspend()): keep the attempt's work from starting if it has not
     * started yet (for a batch job still queued: hold it); work that already runs goes on.
     * release() is called when the run is resumed, only after hold(). Called on the host's
     * event-loop thread like suspend(); either may cross the plugin's own complete(), which must
     * be harmless. Return TH_OK, or an error when the work could not be held (the host logs it).
     * May be NULL without TH_CAP_HOLD. */
    th_status (*hold)(th_instance *inst, uint64_t token);
    th_status (*release)(th_instance *inst, uint64_t token);
} th_plugin_api;

/* The entry function every plugin exports as TH_PLUGIN_ENTRY_SYMBOL. host_major and host_minor
 * are the host's ABI version; the plugin may use them to adapt but must return its table. */
typedef const th_plugin_api *(*th_plugin_entry_fn)(uint32_t host_major, uint32_t host_minor);

#ifdef __cplusplus
}
#endif

#endif /* TASKHUB_PLUGIN_API_H */
