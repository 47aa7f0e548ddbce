/* greet.c: a complete TaskHub executor plugin in C99 (docs/plugin-guide.md walks through it).
 *
 * A task with `plugin = "greet"` writes "Hello, NAME!" to its log and succeeds, at once or after
 * `delay_ms` milliseconds.
 *
 *   task parameters      name      string, required
 *                        delay_ms  integer from 0 to 3600000, default 0
 *   [plugins.greet]      greeting  string, default "Hello"
 *
 * Non-blocking: execute() runs on the daemon's event loop and must return at once, so a delayed
 * greeting waits on a host timer (add_timer) and holds no thread while it waits. cancel() stops
 * the timer and completes the attempt as cancelled. health_check() runs on a thread of its own, so
 * it can notice what the event loop cannot: a timer long overdue means the loop is not calling back.
 *
 * Parameters and settings arrive as JSON; this example reads them with jansson.
 */
#define _POSIX_C_SOURCE 200809L

#include <taskhub/plugin_api.h>

#include <jansson.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GREET_MAX_DELAY_MS 3600000
#define GREET_OVERDUE_MS 5000 /* a timer this late makes the plugin unhealthy */

typedef struct greet_plugin greet_plugin;

/* A greeting waiting for its timer. Owned by the plugin's list until the timer fires or the
 * attempt is cancelled, whichever comes first; both happen on the event-loop thread. */
typedef struct waiting {
    greet_plugin *plugin;
    uint64_t token;
    uint64_t timer_id;
    int64_t due_ms; /* CLOCK_MONOTONIC */
    int log_fd;     /* the host keeps it open until complete() */
    char line[256];
    struct waiting *next;
} waiting;

struct greet_plugin {
    const th_host_api *host;
    th_host_ctx *ctx;
    char greeting[64];
    pthread_mutex_t mutex; /* guards `waiting`: health_check() reads it from another thread */
    waiting *waiting;
};

typedef struct greet_params {
    char name[128];
    int64_t delay_ms;
} greet_params;

/* Writes a NUL-terminated message into a host buffer, truncating it to fit. */
static void put(th_buffer buf, const char *text) {
    if (buf.data != NULL && buf.capacity > 0) snprintf(buf.data, buf.capacity, "%s", text);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The TOML name of a JSON value's type, for messages: parameters come from TOML tables. */
static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a float";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "a table";
    default: return "null";
    }
}

/* Reads a task's parameters into *out. On a problem returns TH_ERR_INVALID with what is wrong
 * in `message` and the offending parameter in `key`. */
static th_status parse_params(const char *params_json, greet_params *out, th_buffer message,
                              th_buffer key) {
    char text[512];
    const char *k;
    json_t *v;
    json_t *root = json_loads(params_json, 0, NULL);
    th_status status = TH_OK;

    out->name[0] = '\0';
    out->delay_ms = 0;
    put(key, "");
    if (root == NULL || !json_is_object(root)) {
        put(message, "the parameters are not a JSON object");
        json_decref(root);
        return TH_ERR_INVALID;
    }
    json_object_foreach(root, k, v) {
        if (strcmp(k, "name") == 0) {
            if (!json_is_string(v)) {
                snprintf(text, sizeof text, "'name' must be a string, like name = \"world\"; found %s",
                         type_name(v));
            } else if (json_string_length(v) == 0) {
                snprintf(text, sizeof text, "'name' must not be empty: whom to greet, like name = \"world\"");
            } else if (json_string_length(v) >= sizeof out->name) {
                snprintf(text, sizeof text, "'name' is %zu bytes long, at most %zu are allowed",
                         json_string_length(v), sizeof out->name - 1);
            } else {
                snprintf(out->name, sizeof out->name, "%s", json_string_value(v));
                continue;
            }
        } else if (strcmp(k, "delay_ms") == 0) {
            if (json_is_integer(v) && json_integer_value(v) >= 0 &&
                json_integer_value(v) <= GREET_MAX_DELAY_MS) {
                out->delay_ms = json_integer_value(v);
                continue;
            }
            if (json_is_integer(v))
                snprintf(text, sizeof text, "'delay_ms' must be from 0 to %d milliseconds, found %lld",
                         GREET_MAX_DELAY_MS, (long long)json_integer_value(v));
            else
                snprintf(text, sizeof text, "'delay_ms' must be an integer number of milliseconds, found %s",
                         type_name(v));
        } else {
            snprintf(text, sizeof text, "unknown parameter '%s' (accepted: name, delay_ms)", k);
        }
        put(message, text);
        put(key, k);
        status = TH_ERR_INVALID;
        break;
    }
    if (status == TH_OK && out->name[0] == '\0') {
        put(message, "'name' is required: whom to greet, like name = \"world\"");
        put(key, "name");
        status = TH_ERR_INVALID;
    }
    json_decref(root);
    return status;
}

/* Writes the whole line to the attempt's log. A failed write is not fatal: the greeting stands. */
static void write_log(int fd, const char *line) {
    size_t left = strlen(line);
    while (left > 0) {
        ssize_t n = write(fd, line, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        line += n;
        left -= (size_t)n;
    }
}

static void finish(greet_plugin *p, uint64_t token, int outcome, const char *message) {
    th_result r;
    r.struct_size = sizeof r;
    r.cpu_user_us = r.cpu_system_us = r.max_rss_kb = -1; /* ABI 1.4: no process measured */
    r.outcome = outcome;
    r.exit_code = -1; /* no process involved */
    r.message = message;
    p->host->complete(p->ctx, token, &r);
}

/* Removes the greeting of `token` from the list and returns it; NULL when it is not waiting
 * (it completed already). */
static waiting *take_waiting(greet_plugin *p, uint64_t token) {
    waiting **it;
    waiting *found = NULL;
    pthread_mutex_lock(&p->mutex);
    for (it = &p->waiting; *it != NULL; it = &(*it)->next) {
        if ((*it)->token == token) {
            found = *it;
            *it = found->next;
            break;
        }
    }
    pthread_mutex_unlock(&p->mutex);
    return found;
}

/* Timer callback (event loop). `user` is still valid: cancel() frees a greeting only after
 * cancel_timer(), after which this callback never runs. */
static void on_timer(void *user) {
    waiting *w = take_waiting(((waiting *)user)->plugin, ((waiting *)user)->token);
    if (w == NULL) return;
    write_log(w->log_fd, w->line);
    finish(w->plugin, w->token, TH_OUTCOME_SUCCEEDED, "greeted after a delay");
    free(w);
}

static th_status greet_create(const th_host_api *host, th_host_ctx *ctx, const char *config_json,
                              th_instance **out, th_buffer err) {
    char text[256];
    const char *k;
    json_t *v;
    greet_plugin *p;
    json_t *root = json_loads(config_json, 0, NULL);

    if (root == NULL || !json_is_object(root)) {
        put(err, "[plugins.greet] is not a JSON object");
        json_decref(root);
        return TH_ERR_INVALID;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        json_decref(root);
        put(err, "out of memory");
        return TH_ERR_NOMEM;
    }
    snprintf(p->greeting, sizeof p->greeting, "Hello");
    json_object_foreach(root, k, v) {
        if (strcmp(k, "greeting") == 0 && json_is_string(v) &&
            json_string_length(v) < sizeof p->greeting) {
            snprintf(p->greeting, sizeof p->greeting, "%s", json_string_value(v));
            continue;
        }
        if (strcmp(k, "greeting") == 0)
            snprintf(text, sizeof text, "'plugins.greet.greeting' must be a string of at most %zu bytes",
                     sizeof p->greeting - 1);
        else
            snprintf(text, sizeof text, "unknown setting 'plugins.greet.%s' (accepted: greeting)", k);
        put(err, text);
        json_decref(root);
        free(p);
        return TH_ERR_INVALID;
    }
    json_decref(root);
    pthread_mutex_init(&p->mutex, NULL);
    p->host = host;
    p->ctx = ctx;
    *out = (th_instance *)p;
    return TH_OK;
}

/* Every attempt has completed before the host destroys the instance, and it cancels pending
 * timers first: the list is empty in a conforming host. */
static void greet_destroy(th_instance *inst) {
    greet_plugin *p = (greet_plugin *)inst;
    while (p->waiting != NULL) {
        waiting *w = p->waiting;
        p->waiting = w->next;
        free(w);
    }
    pthread_mutex_destroy(&p->mutex);
    free(p);
}

static th_status greet_validate(th_instance *inst, const char *params_json, th_buffer message,
                                th_buffer key) {
    greet_params params;
    (void)inst;
    return parse_params(params_json, &params, message, key);
}

static th_status greet_execute(th_instance *inst, const th_task *task, uint64_t token,
                               th_buffer err) {
    greet_plugin *p = (greet_plugin *)inst;
    greet_params params;
    char key[64];
    th_buffer key_buf;
    waiting *w;

    key_buf.data = key;
    key_buf.capacity = sizeof key;
    if (parse_params(task->params_json, &params, err, key_buf) != TH_OK) return TH_ERR_INVALID;

    w = calloc(1, sizeof *w);
    if (w == NULL) {
        put(err, "out of memory");
        return TH_ERR_NOMEM;
    }
    snprintf(w->line, sizeof w->line, "%s, %s! (task %s, attempt %u)\n", p->greeting, params.name,
             task->task_id, (unsigned)task->attempt);
    if (params.delay_ms == 0) {
        write_log(task->log_fd, w->line);
        free(w);
        finish(p, token, TH_OUTCOME_SUCCEEDED, "greeted"); /* allowed inside execute() */
        return TH_OK;
    }

    w->plugin = p;
    w->token = token;
    w->log_fd = task->log_fd;
    w->due_ms = now_ms() + params.delay_ms;
    /* Listed before the timer is armed; the callback cannot run before execute() returns, since
     * both run on the event loop. */
    pthread_mutex_lock(&p->mutex);
    w->next = p->waiting;
    p->waiting = w;
    pthread_mutex_unlock(&p->mutex);
    if (p->host->add_timer(p->ctx, (uint64_t)params.delay_ms, on_timer, w, &w->timer_id) != TH_OK) {
        take_waiting(p, token);
        free(w);
        put(err, "the host refused a timer");
        return TH_ERR_FAILED; /* the attempt did not start: no complete() */
    }
    return TH_OK;
}

static th_status greet_cancel(th_instance *inst, uint64_t token) {
    greet_plugin *p = (greet_plugin *)inst;
    waiting *w = take_waiting(p, token);
    /* Not waiting: the greeting completed already (a cancel may cross a completion). */
    if (w == NULL) return TH_OK;
    p->host->cancel_timer(p->ctx, w->timer_id);
    finish(p, token, TH_OUTCOME_CANCELLED, "cancelled before the greeting");
    free(w);
    return TH_OK;
}

static th_status greet_health_check(th_instance *inst, th_health *out) {
    greet_plugin *p = (greet_plugin *)inst;
    int64_t now = now_ms();
    int64_t worst = 0;
    unsigned count = 0;
    char text[160];
    waiting *w;

    pthread_mutex_lock(&p->mutex);
    for (w = p->waiting; w != NULL; w = w->next) {
        ++count;
        if (now - w->due_ms > worst) worst = now - w->due_ms;
    }
    pthread_mutex_unlock(&p->mutex);

    if (worst > GREET_OVERDUE_MS) {
        out->state = TH_HEALTH_UNHEALTHY;
        snprintf(text, sizeof text, "a greeting is %lld ms overdue: the host's timers do not fire",
                 (long long)worst);
    } else {
        out->state = TH_HEALTH_OK;
        snprintf(text, sizeof text, "%u greeting(s) waiting, none overdue", count);
    }
    put(out->message, text);
    return TH_OK;
}

TH_EXPORT const th_plugin_api *th_plugin_entry(uint32_t host_major, uint32_t host_minor) {
    static const th_plugin_api api = {
        TH_ABI_MAGIC,
        TH_ABI_VERSION_MAJOR,
        TH_ABI_VERSION_MINOR,
        sizeof(th_plugin_api),
        0, /* min_host_minor: nothing here needs more than ABI 1.0 */
        "greet",
        "1.0.0",
        "Writes a greeting to the task log, at once or after a delay",
        TH_CAP_CANCEL | TH_CAP_HEALTH_CHECK,
        TH_THREADS_SAFE, /* the list of waiting greetings is locked */
        greet_create,
        greet_destroy,
        greet_validate,
        greet_execute,
        greet_cancel,
        greet_health_check,
        NULL, /* suspend (ABI 1.1): not supported, no TH_CAP_SUSPEND */
        NULL, /* resume */
    };
    (void)host_major;
    (void)host_minor;
    return &api;
}
