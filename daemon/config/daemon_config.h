// taskhub.toml: the daemon's own configuration, loaded once at start into an immutable value.
#ifndef TASKHUB_CONFIG_DAEMON_CONFIG_H
#define TASKHUB_CONFIG_DAEMON_CONFIG_H

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cgroup/cgroup.h"
#include "config/diagnostic.h"
#include "config/notify_target.h"
#include "config/workflow_limits.h"
#include "taskhub_install_paths.h"

namespace taskhub::config {

struct PoolConfig {
    int min_workers = 2;
    int max_workers = 32;
    std::chrono::milliseconds idle_timeout{60'000};
};

enum class Isolation { InProcess, Process };
const char* toString(Isolation i) noexcept; // "in_process" | "process"

// What the engine does with a ready task whose plugin is unhealthy.
enum class OnUnhealthy { Hold, Fail };
const char* toString(OnUnhealthy o) noexcept; // "hold" | "fail"

// Health checks of one plugin (docs/plugins.md, "Health checks").
struct HealthSettings {
    std::chrono::milliseconds interval{30'000};
    std::chrono::milliseconds timeout{2'000};
    int unhealthy_after = 3; // consecutive failed checks that make a plugin unhealthy
    int healthy_after = 2;   // consecutive passed checks that make an unhealthy plugin healthy again
    OnUnhealthy on_unhealthy = OnUnhealthy::Hold;
};

// [plugins.NAME]: keys the engine owns are parsed here; the rest is the plugin's own
// configuration, handed to its create() as JSON.
struct PluginSettings {
    int max_concurrency = 0;          // 0 = unlimited
    std::optional<Isolation> isolation; // unset: in_process for TaskHub's own plugins, else
                                        // DaemonConfig::default_isolation
    HealthSettings health;
    // The account ("user" or "user:group") the plugin's taskhub-runner process runs as when its
    // isolation is process; empty: taskhubd's own user. Meaningless in process (a load error).
    std::string user;
    std::string plugin_config_json = "{}";
};

// [history]: how much run history and task output is kept (docs/operations.md, "History and
// housekeeping"). Workflow files may override keep_runs and keep_days for their own runs.
struct HistorySettings {
    std::optional<int> keep_runs;  // top-level runs kept per workflow, newest first; unset: all
    std::optional<int> keep_days;  // top-level runs younger than this are kept; unset: all
    // Bytes one task attempt's log may hold: 64 MiB unless configured, so that a task printing
    // without end cannot fill the state disk. There is no "unlimited".
    uint64_t max_log_size = uint64_t{64} << 20;
    std::string max_log_size_text = "64MB"; // as written, e.g. "10MB", for the truncation marker
};

// [control]: bounds on what clients of the control socket can make the daemon hold
// (docs/control-protocol.md, "Limits"). Root and the daemon's own user are exempt from the
// per-uid cap, the answer size and the shared request buffer, so that an operator can always get
// in. The defaults keep one hostile read-only user under about 64 MB of daemon memory: 16
// connections x 2 MiB of answer + 16 MiB of request buffer, whatever it does.
struct ControlSettings {
    int max_connections = 256;          // connections of users other than root / the daemon's
    int max_connections_per_uid = 16;   // connections of one such user
    uint64_t max_request_size = 1 << 20;   // one request line, bytes
    uint64_t request_buffer = 16 << 20;    // unfinished request lines of all connections, bytes
    uint64_t max_answer_size = 2 << 20;    // one answer line, bytes (logs fits its content to it)
    std::chrono::milliseconds client_timeout{30'000}; // to finish a request line or take an answer
};

// [metrics]: how the Prometheus metrics leave the daemon (docs/operations.md, "Prometheus").
// Both ways are off by default.
struct MetricsSettings {
    // The file node_exporter's textfile collector reads (it reads *.prom only); empty: off.
    // Written every textfile_interval, at start and at shutdown, atomically (write + rename).
    std::filesystem::path textfile;
    std::chrono::milliseconds textfile_interval{15'000};
    // The HTTP listener for a direct scrape of /metrics, as written ("127.0.0.1:9464",
    // "[::1]:9464"); empty: off. listen_host is the IP address without brackets.
    std::string listen;
    std::string listen_host;
    uint16_t listen_port = 0;
};

// Splits "host:port" (IPv4 literal) or "[host]:port" (IPv6 literal) into an IP address and a
// port 1-65535. Host names are refused (the listener binds before anything resolves names).
// false: *err says what is wrong and what would be right.
bool parseListenAddress(const std::string& text, std::string* host, uint16_t* port, std::string* err);

// The plugins shipped with TaskHub (always in_process unless configured otherwise).
bool isFirstPartyPlugin(const std::string& name) noexcept;

struct DaemonConfig {
    std::filesystem::path file;            // the config file itself (absolute)
    std::vector<std::filesystem::path> drop_ins; // file.d/*.toml merged over it, in the order merged
    std::filesystem::path workflows_dir;
    std::vector<std::filesystem::path> plugin_dirs;
    std::filesystem::path state_dir;
    std::filesystem::path socket;
    std::string timezone;                  // empty: the system zone
    std::string log_level = "info";
    std::string admin_group;               // members may use mutating commands; empty: none
    std::string socket_group;              // group owner of the socket (who may connect); empty: the daemon's
    // The account of tasks that set no run_as (nor does their workflow) and whose plugin honours
    // run_as (TH_CAP_RUN_AS, in process); empty: they run as taskhubd's own user.
    std::string default_run_as;
    std::chrono::milliseconds shutdown_grace{30'000};
    int max_running_tasks = 0;             // 0 = unlimited
    int max_nesting_depth = 10;            // child runs below a top-level run, at most
    WorkflowLimits workflow_limits;        // max_workflow_file_size, max_workflow_tasks
    PoolConfig pool;
    HistorySettings history;
    ControlSettings control;
    MetricsSettings metrics;
    Isolation default_isolation = Isolation::InProcess; // for plugins not shipped with TaskHub
    // [daemon] containment: how tasks are contained (docs/operations.md, "Containment"): a cgroup per attempt when a
    // writable cgroup2 exists (auto), always (cgroup: taskhubd refuses to start without), or
    // process groups only (process-group).
    cgroup::Containment containment = cgroup::Containment::Auto;
    std::map<std::string, PluginSettings> plugins;
    // [[notify]]: the targets of workflows without their own [[notify]]; [notifications]: how
    // every notification is delivered.
    std::vector<NotifyTarget> notify;
    NotificationSettings notifications;

    // The isolation plugin `name` runs with, and its settings (defaults when not configured).
    Isolation isolationOf(const std::string& name) const;
    PluginSettings settingsOf(const std::string& name) const;
};

// Built-in defaults: the paths of this installation, from the prefix the build was configured
// with (cmake/TaskHubInstall.cmake; a /usr prefix gives the FHS paths of docs/operations.md).
inline constexpr const char* kDefaultConfigPath = TASKHUB_INSTALL_CONFIG_FILE;     // <sysconfdir>/taskhub/taskhub.toml
inline constexpr const char* kDefaultWorkflowsDir = TASKHUB_INSTALL_WORKFLOWS_DIR; // <sysconfdir>/taskhub/workflows.d
inline constexpr const char* kDefaultPluginDir = TASKHUB_INSTALL_PLUGIN_DIR;       // <libdir>/taskhub/plugins
inline constexpr const char* kDefaultStateDir = TASKHUB_INSTALL_STATE_DIR;         // /var/lib/taskhub
inline constexpr const char* kDefaultSocketPath = TASKHUB_INSTALL_SOCKET;          // /run/taskhub/taskhub.sock

// Parses a byte size: an integer with an optional unit B, KB, MB or GB (also K, M, G, KiB, MiB,
// GiB; all powers of 1024), e.g. "10MB", "512KB", "1048576". On error returns std::nullopt and
// sets *err to what is wrong and what would be right.
std::optional<uint64_t> parseByteSize(const std::string& text, std::string* err);

// Reads and validates a config file with its drop-ins: every file.d/*.toml (not hidden, a
// regular file) merged over it in byte order of the names, tables key by key, any other value
// replacing the earlier one whole (docs/operations.md, "Drop-ins"); a missing file.d is none.
// Relative paths, also in drop-ins, resolve against the file's directory.
// nullopt: *problems holds one diagnostic per problem (unknown keys, wrong types, bad values),
// naming the file (the config or a drop-in) and line.
// `read`, when set, reads each file (taskhubd: through the trust check; a refusal is a problem);
// `dir_check`, when set, is asked about file.d before it is listed (taskhubd: the trust check).
std::optional<DaemonConfig> loadDaemonConfig(const std::filesystem::path& file, std::vector<Diagnostic>* problems,
                                             const FileReader& read = {}, const DirCheck& dir_check = {});

// Every key loadDaemonConfig() accepts, named as taskhub.toml(5) names them: "workflows_dir",
// "[pool] min_workers", "[plugins.NAME] isolation" (a plugin's table hands any other key to the
// plugin), "[[notify]] on". The loader's unknown-key checks use the same sets; the man page's
// test (tests/docs) compares them with the page.
std::vector<std::string> daemonConfigKeys();

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_DAEMON_CONFIG_H
