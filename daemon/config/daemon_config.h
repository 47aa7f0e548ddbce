// taskhub.toml: the daemon's own configuration, loaded once at start into an immutable value.
#ifndef TASKHUB_CONFIG_DAEMON_CONFIG_H
#define TASKHUB_CONFIG_DAEMON_CONFIG_H

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "config/diagnostic.h"

namespace taskhub::config {

struct PoolConfig {
    int min_workers = 2;
    int max_workers = 32;
    std::chrono::milliseconds idle_timeout{60'000};
};

// [plugins.NAME]: keys the engine owns are parsed here; the rest is the plugin's own
// configuration, handed to its create() as JSON.
struct PluginSettings {
    int max_concurrency = 0;          // 0 = unlimited
    std::string plugin_config_json = "{}";
};

struct DaemonConfig {
    std::filesystem::path file;            // the config file itself (absolute)
    std::filesystem::path workflows_dir;
    std::vector<std::filesystem::path> plugin_dirs;
    std::filesystem::path state_dir;
    std::filesystem::path socket;
    std::string timezone;                  // empty: the system zone
    std::string log_level = "info";
    std::string admin_group;               // members may use mutating commands; empty: none
    std::string socket_group;              // group owner of the socket (who may connect); empty: the daemon's
    std::chrono::milliseconds shutdown_grace{30'000};
    int max_running_tasks = 0;             // 0 = unlimited
    int max_nesting_depth = 10;            // child runs below a top-level run, at most
    PoolConfig pool;
    std::map<std::string, PluginSettings> plugins;
};

// Built-in defaults: the installed (FHS) paths of docs/operations.md.
inline constexpr const char* kDefaultConfigPath = "/etc/taskhub/taskhub.toml";
inline constexpr const char* kDefaultSocketPath = "/run/taskhub/taskhub.sock";
#ifndef TASKHUB_DEFAULT_PLUGIN_DIR
#define TASKHUB_DEFAULT_PLUGIN_DIR "/usr/lib/taskhub/plugins"
#endif
// The installed plugin directory (${CMAKE_INSTALL_FULL_LIBDIR}/taskhub/plugins).
inline constexpr const char* kDefaultPluginDir = TASKHUB_DEFAULT_PLUGIN_DIR;

// Reads and validates a config file. Relative paths resolve against the file's directory.
// Throws ConfigError with one diagnostic per problem (unknown keys, wrong types, bad values).
DaemonConfig loadDaemonConfig(const std::filesystem::path& file);

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_DAEMON_CONFIG_H
